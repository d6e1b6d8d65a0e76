"""The container's flags as JSON, for the control plane to check deployments' serving args without vLLM.

`python -m serving.flags_snapshot --write` (`make serving-flags`) writes
functions/modeldrop/serving_flags.json; tests/serving/test_flags_snapshot.py fails when it is stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from serving import flags

SNAPSHOT = Path(__file__).resolve().parent.parent / "functions" / "modeldrop" / "serving_flags.json"
MAX_CHOICES = 64  # longer lists (backends, methods) are left to the container's own parser


def _takes(action: argparse.Action) -> str:
    """How many words follow the flag: none, one, one or more, any number, or an optional one."""
    if action.nargs == 0:
        return "none"
    if action.nargs is None or action.nargs == 1:
        return "one"
    if action.nargs == "+":
        return "some"
    if action.nargs in ("*", argparse.REMAINDER):
        return "any"
    if action.nargs == "?":
        return "optional"
    return "one"


def _choices(action: argparse.Action) -> list[str] | None:
    # Only where argparse compares the word itself (or its int): a type that rewrites the word
    # (lower-cases it, maps "none" to None) would make an exact check refuse what vLLM takes.
    if (
        action.choices is None
        or action.type not in (None, str, int)
        or action.nargs not in (None, 1)
    ):
        return None
    choices = list(action.choices)
    if len(choices) > MAX_CHOICES or not all(isinstance(c, str | int) for c in choices):
        return None
    return [str(c) for c in choices]


def _value(action: argparse.Action) -> dict[str, Any]:
    """The value's type where the control plane can check it with the very function vLLM's parser
    calls (int, float, json.loads), seen through vLLM's parse_type / optional_type wrappers; the
    rest (human-readable sizes, dataclasses, lambdas) is left to the container's own parser."""
    parse, none_ok = action.type, False
    for _ in range(3):
        name = getattr(parse, "__qualname__", "")
        cells = {
            var: cell.cell_contents
            for var, cell in zip(
                getattr(getattr(parse, "__code__", None), "co_freevars", ()),
                getattr(parse, "__closure__", None) or (),
                strict=False,
            )
        }
        if name.endswith(
            ("optional_type.<locals>._optional_type", "parse_type.<locals>._parse_type")
        ):
            none_ok = none_ok or name.startswith("optional_type")
            parse = cells.get("return_type")
            continue
        break
    kinds = {int: "int", float: "float", json.loads: "json"}
    kind = kinds.get(parse) if action.nargs in (None, 1) else None  # type: ignore[call-overload]
    if kind is None:
        return {}
    return {"value": kind, "none_ok": True} if none_ok else {"value": kind}


def snapshot() -> dict[str, Any]:
    """Every option string of `flags.parser()`: its destination, what it takes, and its choices."""
    from vllm import __version__

    options: dict[str, dict[str, Any]] = {}
    for action in flags.parser()._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        entry: dict[str, Any] = {"dest": action.dest, "takes": _takes(action)}
        choices = _choices(action)
        if choices is not None:
            entry["choices"] = choices
        entry.update(_value(action))
        for option in action.option_strings:
            options[option] = entry
    return {
        "vllm": __version__,
        "unsupported": dict(sorted(flags.UNSUPPORTED.items())),
        "deployment_owned": sorted(flags.DEPLOYMENT_OWNED),
        "flags": dict(sorted(options.items())),
    }


def render() -> str:
    return json.dumps(snapshot(), indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.flags_snapshot")
    parser.add_argument("--write", action="store_true", help=f"write {SNAPSHOT.name}")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        SNAPSHOT.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
