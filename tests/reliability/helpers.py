"""Builders and read-backs the reliability tests share: commands, uploads, and what Vertex holds."""

from __future__ import annotations

from typing import Any

import httpx
from functions.world import World, sound_files
from support.builders import make_command


def cpu_deploy(model: str, **overrides: Any) -> dict[str, Any]:
    """A CPU-only deploy command (the emulator runs the echo image for it in about a second)."""
    body = make_command("deploy", model=model, machine_type="n1-standard-4", **overrides)
    return {**body, "accelerator": None}


def upload(world: World, model: str, version: str) -> None:
    """A plain copy of a small, valid version folder (three files, three notifications)."""
    for name, data in sound_files().items():
        world.put(model, version, name, data)


def _location(world: World) -> str:
    return f"/v1/projects/{world.settings.project}/locations/{world.settings.region}"


def endpoints(vertex_url: str, world: World) -> dict[str, list[dict[str, Any]]]:
    """Endpoint id -> its deployed models, as the emulator reports them."""
    url = f"{vertex_url}{_location(world)}/endpoints"
    found = httpx.get(url, timeout=30).json().get("endpoints", [])
    return {e["name"].rsplit("/", 1)[1]: e.get("deployedModels", []) for e in found}


def model_versions(vertex_url: str, world: World, model: str) -> list[dict[str, Any]]:
    """Every registered version of `model` (none when the model doesn't exist)."""
    url = f"{vertex_url}{_location(world)}/models/{model}:listVersions"
    response = httpx.get(url, timeout=30)
    if response.status_code == 404:
        return []
    return list(response.json().get("models", []))


def set_faults(vertex_url: str, **config: Any) -> None:
    response = httpx.put(f"{vertex_url}/emulator/faults", json=config, timeout=10)
    response.raise_for_status()


def modelled_ticks(duration: str, pause_s: float) -> int:
    """Sweep ticks `pause_s` apart that the emulator's modelled `duration.<duration>` adds (0 under legacy).

    The emulator reads its preset, time scale and rules from MODELDROP_VERTEX_* (local.vertex.settings),
    and so does this.
    """
    import argparse
    import math
    import os

    from local.vertex.settings import fidelity_from

    fidelity = fidelity_from(
        argparse.Namespace(fidelity=None, time_scale=None, rule=[]), os.environ
    )
    seconds = getattr(fidelity.durations, duration) * fidelity.time_scale
    return math.ceil(seconds / pause_s)
