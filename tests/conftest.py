"""Session-wide fixtures: the real emulators, started once, bound to 127.0.0.1, stopped by PID."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.names import GCS_TOPIC, PROJECT

from local.gcs_emulator import start_gcs
from local.processes import free_port, stop
from local.pubsub_emulator import start_pubsub


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def pubsub_host(logs_dir: Path) -> Iterator[str]:
    """A running Pub/Sub emulator; PUBSUB_EMULATOR_HOST points the SDK at it for the session."""
    port = free_port()
    child = start_pubsub(port, logs_dir / "pubsub.log")
    host = f"127.0.0.1:{port}"
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    try:
        yield host
    finally:
        stop(child)
        if previous is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = previous


@pytest.fixture(scope="session")
def gcs_host(pubsub_host: str, logs_dir: Path) -> Iterator[str]:
    """A running fake-gcs-server publishing notifications to GCS_TOPIC; STORAGE_EMULATOR_HOST set."""
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    try:
        publisher.create_topic(name=publisher.topic_path(PROJECT, GCS_TOPIC))
    except AlreadyExists:
        pass
    port = free_port()
    child = start_gcs(port, logs_dir / "gcs.log", pubsub_host, PROJECT, GCS_TOPIC)
    host = f"http://127.0.0.1:{port}"
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = host
    try:
        yield host
    finally:
        stop(child)
        if previous is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous
