"""Builders and read-backs the reliability tests share: commands, uploads, and what Vertex holds."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping
from typing import Any

import httpx
from functions.world import World, sound_files
from support.builders import make_command

from local.vertex.fidelity import Fidelity


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


# The suite plays Vertex as Google documents it unless MODELDROP_VERTEX_* say otherwise: the
# faithful preset with its modelled durations scaled 0.01 (a 600 s CPU deploy in 6 s).
FIDELITY_DEFAULTS = {"MODELDROP_VERTEX_FIDELITY": "faithful", "MODELDROP_VERTEX_TIME_SCALE": "0.01"}


def vertex_env(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment the suite's emulator starts with: `env`, over the suite's fidelity defaults."""
    return {**FIDELITY_DEFAULTS, **env}


def vertex_fidelity(env: Mapping[str, str] = os.environ) -> Fidelity:
    """The rules the suite's emulator plays (it reads MODELDROP_VERTEX_*, local.vertex.settings)."""
    from local.vertex.settings import fidelity_from

    none = argparse.Namespace(fidelity=None, time_scale=None, rule=[])
    return fidelity_from(none, vertex_env(env))


def modelled_ticks(duration: str, pause_s: float) -> int:
    """Sweep ticks `pause_s` apart that the emulator's modelled `duration.<duration>` adds (0 under legacy)."""
    return math.ceil(vertex_fidelity().seconds(duration) / pause_s)
