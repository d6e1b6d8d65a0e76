"""A deployment's serving args checked against a snapshot of the container's flags (no vLLM here).

`serving_flags.json` is vLLM's server parser (and the container's own flags) as the serving image
has them, written by `make serving-flags`; a serving test fails when it no longer matches the
installed vLLM. The words are read as vLLM's parser (argparse) reads them: `--flag value`,
`--flag=value`, underscores for dashes, dotted keys into a JSON option
(`--compilation-config.mode=3`), `-O3`, a value stuck to a two-character flag (`-qfp8`, `-n2`;
`-tp2` is refused, as argparse refuses it), and a unique prefix of a flag (`--tensor-parallel 2`;
an ambiguous one is refused).
A value whose type vLLM parses with int, float or json.loads is parsed here the same way; what the
snapshot can't tell (human-readable sizes, vLLM's checks across options) the container's own parser
checks at start.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).with_name("serving_flags.json")
MAX_ARGS = 256
MAX_ARG_CHARS = 4096
_NEGATIVE_NUMBER = re.compile(r"-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Flags:
    """The snapshot: option string -> (dest, what it takes, choices), and the refused dests."""

    vllm: str
    options: dict[str, dict[str, Any]]
    owned: frozenset[str]
    unsupported: dict[str, str]


@cache
def snapshot() -> Flags:
    data = json.loads(SNAPSHOT.read_text())
    return Flags(
        vllm=str(data["vllm"]),
        options=dict(data["flags"]),
        owned=frozenset(data["deployment_owned"]),
        unsupported=dict(data["unsupported"]),
    )


# A value's type as vLLM's parser checks it, with the same function (serving/flags_snapshot.py).
_PARSERS: dict[str, Any] = {"int": int, "float": float, "json": json.loads}
_KINDS = {"int": "an integer", "float": "a number", "json": "a JSON value"}


def _parses(option: dict[str, Any], value: str) -> bool:
    kind = option.get("value")
    if kind not in _PARSERS or (option.get("none_ok") and value in ("", "None")):
        return True
    try:
        _PARSERS[kind](value)
    except ValueError:  # json.JSONDecodeError is one
        return False
    return True


def _is_flag(word: str) -> bool:
    return word.startswith("-") and len(word) > 1 and not _NEGATIVE_NUMBER.fullmatch(word)


def _split(word: str) -> tuple[str, str | None, bool]:
    """(option string as vLLM normalizes it, attached value or None, dotted into a JSON option)."""
    if word.startswith("-O") and not word.startswith("--") and word != "-O":
        return "--optimization-level", word[3:] if word[2] == "=" else word[2:], False
    if word == "-O":
        return "--optimization-level", None, False
    name, eq, value = word.partition("=")
    dotted = "." in name
    name = name.split(".", 1)[0]
    if name.startswith("--"):
        name = "--" + name[2:].replace("_", "-")
    return name, value if eq else None, dotted


def _resolve(name: str, value: str | None, flags: Flags) -> tuple[str, str | None] | str:
    """(option string, attached value) as argparse resolves `name`, or why it resolves to none.

    argparse (allow_abbrev, as vLLM's parser has it) takes an exact option string first, then a
    two-character option with its value stuck on (`-qfp8`), then a prefix of option strings; two
    or more candidates are ambiguous.
    """
    if name in flags.options:
        return name, value
    candidates: list[tuple[str, str | None]] = []
    if name[1] != "-" and len(name) > 2 and value is None and name[:2] in flags.options:
        candidates.append((name[:2], name[2:]))  # argparse only splits a two-character flag
    candidates += [(option, value) for option in flags.options if option.startswith(name)]
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        named = ", ".join(sorted({option for option, _ in candidates})[:6])
        return f"{name} is ambiguous: it could be {named}"
    close = difflib.get_close_matches(name, list(flags.options), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    if close and name.startswith(close[0]) and name[1] != "-":
        stuck = name[len(close[0]) :]
        hint = f" (argparse splits a value off two-character flags only: {close[0]} {stuck})"
    return f"{name} is not a flag of vLLM {flags.vllm} or the container{hint}"


def problems(args: Sequence[str], flags: Flags | None = None) -> list[str]:
    """Every problem with a deployment's serving args, in order; empty when the words are good."""
    flags = flags or snapshot()
    if len(args) > MAX_ARGS:
        return [f"{len(args)} serving args; at most {MAX_ARGS}"]
    found: list[str] = []
    i = 0
    previous: str | None = None  # what the flag before a stray word takes, for the message
    while i < len(args):
        word = args[i]
        i += 1
        if not word or len(word) > MAX_ARG_CHARS or _CONTROL.search(word):
            found.append(
                f"serving arg {i} ({word[:40]!r}) must be 1-{MAX_ARG_CHARS} characters "
                "without control characters"
            )
            continue
        if not _is_flag(word):
            if previous is None:
                found.append(f"{word!r} is not a flag (serving args start with one: --flag value)")
            else:
                found.append(f"{word!r} follows {previous}")
            continue
        if word == "--":
            found.append("a bare '--' is not a flag")
            previous = None
            continue
        name, value, dotted = _split(word)
        resolved = _resolve(name, value, flags)
        if isinstance(resolved, str):
            found.append(resolved)
            previous = None
            continue
        name, value = resolved
        option = flags.options[name]
        dest, takes = str(option["dest"]), str(option["takes"])
        if takes == "none" and not dotted:
            if value is not None:
                found.append(f"{name} takes no value (got {value!r})")
            previous = f"{name}, which takes no value"
        else:
            if dotted and takes != "one":
                found.append(f"{name} is not a JSON option: {word!r} can't set a key in it")
            if value is None and takes in ("one", "some"):
                if i < len(args) and not _is_flag(args[i]):
                    value = args[i]
                    i += 1
                else:
                    found.append(f"{name} needs a value")
            elif value is None and takes == "optional" and i < len(args):
                if not _is_flag(args[i]):
                    value = args[i]
                    i += 1
            if takes in ("some", "any"):
                while i < len(args) and not _is_flag(args[i]):
                    i += 1  # the further values of a list option
            choices = option.get("choices")
            if value is not None and choices and not dotted and value not in choices:
                found.append(f"{name} must be one of {', '.join(choices)} (got {value!r})")
            elif value is not None and not dotted and not _parses(option, value):
                found.append(f"{name} takes {_KINDS[option['value']]} (got {value!r})")
            previous = f"{name}, which takes one value" if takes in ("one", "optional") else None
        if dest in flags.owned:
            found.append(f"{name} is set by the model's registration; a deployment can't change it")
        elif dest in flags.unsupported and not (dest == "api_server_count" and value == "1"):
            found.append(f"{name} is not supported: {flags.unsupported[dest]}")
    return found
