"""The Vertex AI emulator for the functions' tests: echo deployments, and a crashing image for failures."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from local.processes import stop
from local.vertex.testing import launch

CRASH_IMAGE = "us-docker.pkg.dev/modeldrop-test/test/crash:1"
CRASH_MAP = f"*/crash:*={sys.executable} -m local.vertex.echo_server --exit-at-start"


@pytest.fixture(scope="session")
def vertex_url(tmp_path_factory: pytest.TempPathFactory, gcs_host: str) -> Iterator[str]:
    """A running Vertex emulator (echo image for deploys, crash image for failing ones)."""
    running = launch(tmp_path_factory.mktemp("vertex"), "--image-map", CRASH_MAP)
    try:
        yield running.url
    finally:
        stop(running.child)
