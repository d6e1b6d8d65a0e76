"""A deploy step's placements, applied: move a step on to its next placement after a stockout, and
say in the result which placement served and why each earlier one was refused.

A fallback is the next step of the same request, not a new command: the step's record (same
request id, same part) is rewritten with the next placement and a deployed model id of its own, so
the endpoint still has one operation at a time and the request still ends in one terminal result.
The pure half (what counts as a stockout, the order a wake tries) is placements.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, replace
from typing import Any

from modeldrop import placements, traffic
from modeldrop.context import Context
from modeldrop.records import OperationRecord
from modeldrop.resources import DeploymentSpec


def first(
    record: OperationRecord, spec: DeploymentSpec, tried: list[dict[str, Any]], note: str = ""
) -> OperationRecord:
    """A deploy step carrying its spec (the first placement), every placement to try, and a
    note its terminal result repeats (a scale-to-zero TTL clamped)."""
    details = {**record.details, "spec": asdict(spec), "placements": tried, "placement": 0}
    if note:
        details["note"] = note
    return record.model_copy(update={"details": details})


def next_placement(ctx: Context, step: OperationRecord, reason: str) -> OperationRecord | None:
    """The step on its next placement after `reason` refused the current one; None if none is left.

    The serving args record follows the deployment to its new deployed model id (the container
    reads it by that id). The caller starts the returned step (steps.start records it first).
    """
    tried = list(step.details.get("placements") or [])
    index = int(step.details.get("placement", 0))
    if index + 1 >= len(tried) or "spec" not in step.details:
        return None
    spec = DeploymentSpec(**step.details["spec"])
    following = tried[index + 1]
    moved = replace(
        spec,
        machine_type=following["machine_type"],
        accelerator_type=following["accelerator"],
        accelerator_count=following["accelerator_count"],
        deployed_model_id=_placement_id(step, index + 1),
    )
    kept = ctx.state.serving_args(step.endpoint, spec.deployed_model_id)
    if kept is not None:
        ctx.state.remember_serving_args(step.endpoint, moved.deployed_model_id, kept)
        ctx.state.forget_serving_args(step.endpoint, spec.deployed_model_id)
    refused = [*step.details.get("refused", []), {"placement": tried[index], "reason": reason}]
    details = {**step.details, "spec": asdict(moved), "placement": index + 1, "refused": refused}
    return step.model_copy(
        update={
            "operation": None,
            "deployed_model_id": moved.deployed_model_id,
            "details": details,
        }
    )


def _placement_id(step: OperationRecord, index: int) -> str:
    return traffic.deployed_model_id(step.request_id, f"{step.part}/placement-{index}")


def forget_serving_args(ctx: Context, step: OperationRecord) -> None:
    """A step that ended without serving: its serving args go, whichever placement holds them."""
    ids = {step.deployed_model_id or ""}
    ids |= {_placement_id(step, i) for i in range(1, len(step.details.get("placements") or []))}
    for deployed_model_id in sorted(ids - {""}):
        ctx.state.forget_serving_args(step.endpoint, deployed_model_id)


def served_first(step: OperationRecord) -> list[dict[str, Any]]:
    """A ready step's placements with the one that served first: what its `wake` will try."""
    tried = list(step.details.get("placements") or [])
    if not tried:
        return []
    index = min(int(step.details.get("placement", 0)), len(tried) - 1)
    return placements.served_first(tried[index], tried)


def refusals(step: OperationRecord) -> list[str]:
    """`placement N (machine): reason` for each placement refused before the current one."""
    tried = list(step.details.get("placements") or [])
    lines = []
    for entry in step.details.get("refused", []):
        n = next((i for i, p in enumerate(tried, 1) if placements.same(p, entry["placement"])), 0)
        lines.append(
            f"placement {n} ({placements.describe(entry['placement'])}) refused: {entry['reason']}"
        )
    return lines


def outcome(records: Iterable[OperationRecord]) -> tuple[str, dict[str, Any], list[str]]:
    """For a finished deploy or wake: a message suffix, result details, and refusal reasons."""
    served, lines, suffixes = [], [], []
    for record in records:
        if record.details.get("note"):
            suffixes.append(str(record.details["note"]))
        tried = list(record.details.get("placements") or [])
        if not tried:
            continue
        index = int(record.details.get("placement", 0))
        current = tried[min(index, len(tried) - 1)]
        refused = refusals(record)
        served.append(
            {
                "model": record.model,
                "version": record.version,
                "deployed_model_id": record.deployed_model_id,
                "placement": current,
                "placement_number": index + 1,
                "placements": len(tried),
                "refused": list(record.details.get("refused", [])),
            }
        )
        lines += refused
        if len(tried) > 1:
            suffixes.append(
                f"on placement {index + 1} of {len(tried)} ({placements.describe(current)})"
                + (f" after {len(refused)} refused" if refused else "")
            )
    details: dict[str, Any] = {"placements": served} if served else {}
    if len(served) == 1:
        details["placement"] = served[0]["placement"]
    return ("; ".join(suffixes), details, lines)
