"""The official Pub/Sub emulator (the Google Cloud CLI's Java jar), started without the gcloud wrapper."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

from local.processes import Child, start, wait_http

JAR_GLOB = "platform/pubsub-emulator/lib/cloud-pubsub-emulator-*-all.jar"


class EmulatorMissing(RuntimeError):
    """The Google Cloud CLI or its pubsub-emulator component is not installed."""


def find_jar() -> Path:
    """The emulator jar under the Cloud SDK root; the version is globbed, never hard-coded."""
    roots = [os.environ["CLOUDSDK_ROOT"]] if os.environ.get("CLOUDSDK_ROOT") else []
    gcloud = shutil.which("gcloud")
    if gcloud:
        roots.append(str(Path(os.path.realpath(gcloud)).parent.parent))
        if not any(glob.glob(os.path.join(root, JAR_GLOB)) for root in roots):
            info = subprocess.run(
                [gcloud, "info", "--format=value(installation.sdk_root)"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            roots.append(info.stdout.strip())
    for root in roots:
        jars = sorted(glob.glob(os.path.join(root, JAR_GLOB)))
        if jars:
            return Path(jars[-1])
    raise EmulatorMissing(
        "the Pub/Sub emulator jar was not found: install the Google Cloud CLI with its "
        "pubsub-emulator component (apt package google-cloud-cli-pubsub-emulator), or set CLOUDSDK_ROOT"
    )


def start_pubsub(port: int, log_path: Path) -> Child:
    """Start the emulator on 127.0.0.1:`port` and wait until it answers `Ok` (~2 s)."""
    java = shutil.which("java")
    if java is None:
        raise EmulatorMissing("java is needed for the Pub/Sub emulator and is not on PATH")
    argv = [
        java,
        "-Xms32m",
        "-Xmx256m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-jar",
        str(find_jar()),
        "--host=127.0.0.1",
        f"--port={port}",
    ]
    child = start("pubsub", argv, log_path)
    wait_http(f"http://127.0.0.1:{port}/", child, timeout_s=60, expect_body=b"Ok")
    return child
