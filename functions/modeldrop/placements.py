"""Stockout-aware placement, pure: which machines a deploy tries in order, and how Vertex's refusal
of one is read (a stockout moves to the next placement; a quota refusal ends the deploy).

Why the two differ: a stockout is the zone running out of hardware for a while — nobody's limit,
and another machine may well be free (Compute Engine: resource errors "aren't related to your
quota"; "try a different zone ... hardware configuration, or ... a later time"). A quota is the
project's own ceiling: falling back to another accelerator would spend a budget the owner did not
pick and hide the refusal, so it is reported as quota, naming the metric to raise.
Sources and the emulator's play of each: docs/vertex-fidelity.md rows 44-46 and 72-74.

Regions are not placements: an endpoint, the Model Registry entry it deploys and the adapter's
clients all live in one location (`projects/P/locations/R`), the sweep lists one location's
endpoints, and Vertex requires the model's artifacts in a bucket of the same region. A placement
in another region would need the model registered there and a second endpoint, which is another
deployment, not another step of this one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from modeldrop import machines
from modeldrop.commands import Placement
from modeldrop.errors import PermanentError


class Refusal(StrEnum):
    """How Vertex refused a deploy."""

    STOCKOUT = "stockout"  # no capacity for this machine now: try the next placement
    QUOTA = "quota"  # the project's quota for this accelerator: reported, not fallen back on
    OTHER = "other"  # anything else (the server never became ready, bad input): reported


# A serving quota names its metric ("The following quota metrics exceed quota limits:
# aiplatform.googleapis.com/custom_model_serving_nvidia_l4_gpus"); a rate quota on API calls
# ("Quota exceeded for ... per minute") is a transient 429, retried, never read as this.
_QUOTA = re.compile(r"exceed quota limits|custom_model_serving_\w+", re.IGNORECASE)
# Resource availability wordings: Compute Engine's documented ones (ZONE_RESOURCE_POOL_EXHAUSTED,
# "does not have enough resources available", "is currently unavailable in the ... zone"), the
# region form other Google products print, and "stockout" (what Google calls it).
_STOCKOUT = re.compile(
    r"ZONE_RESOURCE_POOL_EXHAUSTED|does not have enough resources available"
    r"|resources? (are |is )?insufficient|currently unavailable in the|stockout",
    re.IGNORECASE,
)


def refusal(error: str) -> Refusal:
    """What a deploy's error text (from the request or its operation) says happened."""
    if _QUOTA.search(error):
        return Refusal.QUOTA
    if _STOCKOUT.search(error):
        return Refusal.STOCKOUT
    return Refusal.OTHER


def resolve(placements: Sequence[Placement]) -> list[dict[str, Any]]:
    """Each placement with its machine type filled in; PermanentError listing every bad one."""
    resolved, problems = [], []
    for n, placement in enumerate(placements, start=1):
        where = f"placement {n}: " if len(placements) > 1 else ""
        try:
            machine = placement.machine_type or machines.default_machine_type(
                placement.accelerator, placement.accelerator_count
            )
        except PermanentError as error:
            problems.append(where + str(error))
            continue
        found = machines.check(machine, placement.accelerator, placement.accelerator_count)
        problems += [where + p for p in found]
        resolved.append(
            {
                "machine_type": machine,
                "accelerator": placement.accelerator,
                "accelerator_count": placement.accelerator_count,
            }
        )
    if problems:
        raise PermanentError("the machine can't be deployed", problems)
    return resolved


def describe(placement: Mapping[str, Any]) -> str:
    """`g2-standard-12 with 1 x NVIDIA_L4`, or `n1-standard-8 (CPU)`."""
    if not placement.get("accelerator"):
        return f"{placement['machine_type']} (CPU)"
    return (
        f"{placement['machine_type']} with {placement['accelerator_count']} x "
        f"{placement['accelerator']}"
    )


def same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    keys = ("machine_type", "accelerator", "accelerator_count")
    return all(a.get(k) == b.get(k) for k in keys)


def served_first(
    served: Mapping[str, Any], placements: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The placements a wake tries: the one that last served first, then the rest in order."""
    rest = [dict(p) for p in placements if not same(p, served)]
    return [dict(served), *rest]
