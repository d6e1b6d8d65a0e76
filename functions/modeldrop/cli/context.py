"""What every CLI command receives: its arguments' profile (resolved once, on first use) and its streams."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from modeldrop.cli.profile import Profile, resolve
from modeldrop.errors import ModeldropError, PermanentError

# Exit codes, documented in the README's CLI reference.
EXIT_OK = 0
EXIT_FAILED = 1  # the request ended failed, rejected, dropped or superseded
EXIT_USAGE = 2  # bad arguments (argparse's own code too)
EXIT_ENVIRONMENT = 3  # no local stack, missing configuration, a service unreachable
EXIT_NOT_FOUND = 4  # an unknown model, version or endpoint
EXIT_TIMEOUT = 5  # no final result within --timeout; the work may still finish
EXIT_INTERRUPTED = 130


class UsageError(PermanentError):
    """The arguments can't make a valid request; nothing was sent."""


class NotFound(PermanentError):
    """The model, version or endpoint named does not exist."""


class Unreachable(ModeldropError):
    """A service of the profile did not answer."""


@dataclass
class Context:
    args: argparse.Namespace
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    _profile: Profile | None = None

    def profile(self) -> Profile:
        """The profile, resolved on first use and activated (the SDKs find the emulators)."""
        if self._profile is None:
            overrides = {
                key: getattr(self.args, key, None)
                for key in ("project", "region", "weights_bucket", "state_bucket")
            }
            local_dir = getattr(self.args, "local_dir", None)
            self._profile = resolve(
                getattr(self.args, "profile", None),
                overrides,
                self.env,
                Path(local_dir) if local_dir else None,
            )
            self._profile.activate()
        return self._profile

    def say(self, line: str) -> None:
        """A progress or status line for people: stderr, so stdout stays parseable."""
        self.err.write(line + "\n")
        self.err.flush()

    def print(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()
