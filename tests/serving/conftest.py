"""Fixtures for the serving tests: the tiny model, and `python -m serving` started as a child process."""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from local.processes import Child, ProcessError, free_port, start
from local.tiny_model import build_tiny_model

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    """A running `python -m serving`, with the health statuses seen while it started."""

    child: Child
    url: str
    seen_health: list[int] = field(default_factory=list)

    def log(self) -> str:
        return self.child.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), seed=0)


@pytest.fixture(scope="session")
def launch() -> Callable[..., Server]:
    """`start_server`, for modules that start their own server."""
    return start_server


def server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a CPU engine: a 1 GiB KV cache, and this checkout importable."""
    env = dict(os.environ)
    env.update(
        {
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def start_server(
    args: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    health_route: str = "/health",
    timeout_s: float = 240.0,
    compile_model: bool = False,
) -> Server:
    """Start the container's entry point on a free port and wait for health 200, recording 503s.

    The engine runs eager (`--enforce-eager`) unless `compile_model`: these tests are about the
    container's HTTP contract, not the kernels, and torch.compile costs ~18 s of the ~45 s a start
    takes on this CPU. The compile cache's tests, and the demo, compile as a deployment does."""
    port = free_port()
    eager = [] if compile_model or "--enforce-eager" in args else ["--enforce-eager"]
    argv = [sys.executable, "-m", "serving", "--host", "127.0.0.1", "--port", str(port), *args]
    argv += eager
    child = start("serving", argv, log_path, env=server_env(env), cwd=REPO)
    server = Server(child, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not child.alive():
            raise ProcessError(f"serving exited early:\n{child.log_tail(60)}")
        try:
            with urllib.request.urlopen(server.url + health_route, timeout=2) as response:
                server.seen_health.append(response.status)
                return server
        except urllib.error.HTTPError as error:
            server.seen_health.append(error.code)
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise ProcessError(f"serving not healthy after {timeout_s:.0f}s:\n{child.log_tail(60)}")
