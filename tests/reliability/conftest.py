"""One control plane per module (its own Vertex emulator, functions and topics), and the figures the tests record."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from functions.world import make_world
from reliability.figures import FIGURES_ENV, Figures
from reliability.helpers import vertex_env, vertex_fidelity
from reliability.plane import Plane, start_plane, stop_plane

from local.processes import stop
from local.vertex.testing import launch

CRASH_MAP = "*/crash:*={python} -m local.vertex.echo_server --exit-at-start"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, gcs_host: str) -> Iterator[Plane]:
    """A Vertex emulator (echo deployments), the three functions, the bridge and push subscriptions."""
    import sys

    tmp = tmp_path_factory.mktemp("plane")
    env = vertex_env()
    vertex = launch(tmp, "--image-map", CRASH_MAP.format(python=sys.executable), env=env)
    # A short upload wait: the hostile corpus proves abandoned uploads end within the test.
    world = make_world(
        vertex.url, upload_wait="15s", metrics_delay=f"{vertex_fidelity().metrics_delay_s}s"
    )
    running = None
    try:
        running = start_plane(world, vertex, tmp / "logs")
        yield running
    finally:
        if running is not None:
            stop_plane(running)
        stop(vertex.child)


@pytest.fixture(autouse=True)
def no_faults_left(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "plane" in request.fixturenames:
        running: Plane = request.getfixturevalue("plane")
        httpx.delete(f"{running.vertex.url}/emulator/faults", timeout=10)


@pytest.fixture(scope="session")
def figures(tmp_path_factory: pytest.TempPathFactory) -> Figures:
    """Where the tests write their counts: $RELIABILITY_FIGURES, else the session's tmp dir."""
    configured = os.environ.get(FIGURES_ENV)
    path = Path(configured) if configured else tmp_path_factory.getbasetemp() / "figures.json"
    return Figures(path)
