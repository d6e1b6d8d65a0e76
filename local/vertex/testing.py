"""Helpers for tests: an emulator child process whose echo image runs `local.vertex.echo_server`."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from local.processes import Child, free_port
from local.vertex.launcher import start_vertex

ECHO_IMAGE = "us-docker.pkg.dev/modeldrop-test/test/echo:1"
ECHO_MAP = f"*/echo:*={sys.executable} -m local.vertex.echo_server"


@dataclass
class Running:
    """A running emulator: where it listens, its process and its data folder."""

    url: str
    port: int
    child: Child
    data_dir: Path


def launch(tmp: Path, *args: str, port: int | None = None) -> Running:
    """Start an emulator keeping state in `tmp`/data, mapping ECHO_IMAGE to the echo server."""
    port = port or free_port()
    data_dir = tmp / "data"
    child = start_vertex(
        port,
        data_dir,
        tmp / f"vertex-{port}.log",
        ["--image-map", ECHO_MAP, "--deploy-timeout", "20", "--health-interval", "0.2", *args],
    )
    return Running(f"http://127.0.0.1:{port}", port, child, data_dir)
