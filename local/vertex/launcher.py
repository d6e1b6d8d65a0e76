"""Start the emulator as a child process (own session, stopped by PID) and wait for /healthz."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from local.processes import Child, start, wait_http


def start_vertex(
    port: int,
    data_dir: Path,
    log_path: Path,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
) -> Child:
    """`python -m local.vertex` on 127.0.0.1:`port`, ready when GET /healthz answers 200 (~1-2 s)."""
    argv = [
        sys.executable,
        "-m",
        "local.vertex",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        *extra_args,
    ]
    child = start("vertex-emulator", argv, log_path, env=env)
    wait_http(f"http://127.0.0.1:{port}/healthz", child, timeout_s=timeout_s)
    return child
