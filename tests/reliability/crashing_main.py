"""on_command with a pause point: at the step named by RELIABILITY_PAUSE_AT the process stops, once, for the test to kill it.

functions-framework loads this file instead of functions/main.py. The production code is untouched:
the adapters' methods are wrapped here, and the first time the named step is reached the process
writes its PID to RELIABILITY_MARKER and sleeps until the test kills it by that PID. A restarted
process finds the marker and runs straight through, as a fresh Cloud Functions instance would.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import functions_framework
import main

from modeldrop.records import OperationRecord
from modeldrop.state import StateStore
from modeldrop.vertex import GapicVertex

_STEP = os.environ.get("RELIABILITY_PAUSE_AT", "")
_MARKER = Path(os.environ.get("RELIABILITY_MARKER", "/nonexistent/marker"))


def _pause(step: str) -> None:
    if step != _STEP or _MARKER.exists():
        return
    _MARKER.write_text(f"{os.getpid()} {step}\n")
    time.sleep(600)  # killed here by the test


_acquire = StateStore.acquire
_record = StateStore.record_operation
_deploy = GapicVertex.deploy


def acquire(self: StateStore, endpoint: str, holder: str, now: Any) -> int:
    generation = _acquire(self, endpoint, holder, now)
    if not holder.startswith("sweep-"):
        _pause("after-lease")
    return generation


def record_operation(self: StateStore, record: OperationRecord) -> None:
    _record(self, record)
    _pause("after-intent" if record.operation is None else "after-recorded")


def deploy(self: GapicVertex, *args: Any, **kwargs: Any) -> str:
    name = _deploy(self, *args, **kwargs)
    _pause("after-deploy-started")
    return name


StateStore.acquire = acquire  # type: ignore[method-assign]
StateStore.record_operation = record_operation  # type: ignore[method-assign]
GapicVertex.deploy = deploy  # type: ignore[method-assign]


@functions_framework.cloud_event
def on_command(event: Any) -> None:
    """The production on_command, run with the pause points above."""
    main.on_command(event)
