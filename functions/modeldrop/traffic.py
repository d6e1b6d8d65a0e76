"""Traffic splits as Vertex requires them: percents over deployed model ids adding up to 100 (or empty)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Set

NEW = "0"  # in a deploy request, the key that stands for the model being deployed


def rescale(weights: Mapping[str, int], total: int) -> dict[str, int]:
    """`weights` scaled to add up to `total` (largest remainder; equal shares when all are 0)."""
    if not weights:
        return {}
    if sum(weights.values()) <= 0:
        weights = dict.fromkeys(weights, 1)
    whole = sum(weights.values())
    exact = {key: value * total / whole for key, value in weights.items()}
    split = {key: int(share) for key, share in exact.items()}
    short = total - sum(split.values())
    for key in sorted(exact, key=lambda k: (split[k] - exact[k], k))[:short]:
        split[key] += 1
    return split


def with_new(current: Mapping[str, int], percent: int) -> dict[str, int]:
    """The split after deploying one more model with `percent` (all of it when it is the only one)."""
    if not current:
        return {NEW: 100}
    return {**rescale(current, 100 - percent), NEW: percent}


def without(current: Mapping[str, int], removed: Set[str], remaining: Set[str]) -> dict[str, int]:
    """The split after undeploying `removed`: the others share 100 in their old proportions."""
    kept = {key: current.get(key, 0) for key in remaining if key not in removed}
    return rescale(kept, 100)


def deployed_model_id(request_id: str, salt: str = "") -> str:
    """A 10-digit deployed model id derived from the request, so a retried deploy is recognised."""
    number = int(hashlib.sha256(f"{request_id}/{salt}".encode()).hexdigest(), 16)
    return str(1_000_000_000 + number % 9_000_000_000)
