"""Vertex AI's traffic-split rules, as pure functions from the current split to the next one."""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping

from local.vertex.errors import ApiError, invalid, precondition

# In a deploy request, this key stands for the model being deployed (its id is not known yet).
NEW_MODEL_KEY = "0"


def _check(split: Mapping[str, int], allowed: Collection[str], what: str) -> None:
    for key, percent in split.items():
        if key not in allowed:
            raise invalid(
                f"{what}: traffic split key {key!r} is not the id of a model deployed on the endpoint."
            )
        if not 0 <= percent <= 100:
            raise invalid(f"{what}: traffic percentage {percent} for {key!r} is not in [0, 100].")
    total = sum(split.values())
    if total != 100:
        raise invalid(f"{what}: traffic split percentages must add up to 100, not {total}.")


def after_deploy(
    current: Mapping[str, int],
    requested: Mapping[str, int],
    new_id: str,
    deployed_ids: Collection[str],
) -> dict[str, int]:
    """The split once `new_id` is deployed; an empty request keeps the split (or gives the first model 100)."""
    if not requested:
        if sum(current.values()) == 0:
            return {new_id: 100}
        return dict(current)
    _check(requested, {*deployed_ids, NEW_MODEL_KEY}, "DeployModel")
    return {(new_id if key == NEW_MODEL_KEY else key): value for key, value in requested.items()}


def check_deploy(requested: Mapping[str, int], deployed_ids: Collection[str]) -> None:
    """Refuse a bad deploy split up front, before anything starts."""
    after_deploy({}, requested, "new", deployed_ids)


def after_undeploy(
    current: Mapping[str, int],
    requested: Mapping[str, int],
    removed_id: str,
    remaining_ids: Collection[str],
) -> dict[str, int]:
    """The split once `removed_id` is gone; traffic left on it (and nothing re-split) is refused."""
    if not remaining_ids:
        return {}
    if requested:
        if requested.get(removed_id, 0) > 0:
            raise invalid(
                f"UndeployModel: the traffic split gives {requested[removed_id]}% to the deployed "
                f"model {removed_id} that is being undeployed."
            )
        split = {k: v for k, v in requested.items() if k != removed_id}
        _check(split, remaining_ids, "UndeployModel")
        return split
    if current.get(removed_id, 0) > 0:
        raise precondition(
            f"Deployed model {removed_id} has {current[removed_id]}% of the endpoint's traffic. "
            "Set a traffic split that moves it to the remaining deployed models, or undeploy "
            "those first."
        )
    return {k: v for k, v in current.items() if k != removed_id}


def check_patch(requested: Mapping[str, int], deployed_ids: Collection[str]) -> None:
    """An endpoint update's split: only deployed ids, adding up to 100 (or empty with nothing deployed)."""
    if not requested and not deployed_ids:
        return
    _check(requested, deployed_ids, "UpdateEndpoint")


def route(split: Mapping[str, int], rng: random.Random) -> str:
    """The deployed model id one request goes to, drawn by the split's weights."""
    weighted = [(key, value) for key, value in split.items() if value > 0]
    if not weighted:
        raise ApiError(
            "FAILED_PRECONDITION",
            "The endpoint has no deployed model with traffic assigned; deploy a model first.",
        )
    pick = rng.uniform(0, sum(value for _, value in weighted))
    for key, value in weighted:
        pick -= value
        if pick < 0:
            return key
    return weighted[-1][0]
