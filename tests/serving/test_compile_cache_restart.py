"""Restarts reuse what a start compiled: saved to the (folder) bucket once ready, restored before the next engine starts."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest

from local.processes import stop
from serving.weights import crc32c_of

pytestmark = pytest.mark.engine
ARGS = ["--max-model-len", "1024"]


@dataclass
class Saved:
    bucket: Path
    manifest: dict[str, Any]
    log: list[dict[str, Any]]


def entries(text: str) -> list[dict[str, Any]]:
    found = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "message" in entry:
            found.append(entry)
    return found


def index_of(log: list[dict[str, Any]], message: str) -> int:
    return next(i for i, e in enumerate(log) if e["message"].startswith(message))


def serve(
    launch: Callable[..., Any], model: Path, bucket: Path, root: Path, log: Path, *extra: str
) -> tuple[Any, list[dict[str, Any]]]:
    """Start the container on `bucket` with an empty VLLM_CACHE_ROOT (a fresh replica's disk)."""
    env = {"MODELDROP_STATE_BUCKET": str(bucket), "VLLM_CACHE_ROOT": str(root)}
    server = launch(["--model", str(model), *ARGS, *extra], log, env=env, compile_model=True)
    return server, entries(server.log())


def wait_for(server: Any, message: str, timeout_s: float = 120) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        log = entries(server.log())
        if any(e["message"] == message for e in log):
            return log
        time.sleep(0.2)
    raise AssertionError(f"no {message!r} in the log:\n{server.child.log_tail(40)}")


@pytest.fixture(scope="module")
def saved(
    tiny_model: Path, launch: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Saved]:
    """A first start, with nothing saved anywhere, left to save its cache after ready."""
    work = tmp_path_factory.mktemp("compile-cache")
    bucket = work / "bucket"
    server, _ = serve(launch, tiny_model, bucket, work / "root", work / "first.log")
    try:
        log = wait_for(server, "compile cache saved")
    finally:
        stop(server.child, grace_s=10)
    manifests = sorted((bucket / "compile-cache").glob("*.json"))
    assert len(manifests) == 1
    yield Saved(bucket, json.loads(manifests[0].read_text()), log)


def test_a_first_start_saves_its_cache_after_ready(saved: Saved) -> None:
    """Nothing to restore; once ready the archive goes up with its key and crc32c, manifest last."""
    log = saved.log
    assert index_of(log, "compile cache absent") < index_of(log, "ready to serve")
    assert index_of(log, "ready to serve") < index_of(log, "compile cache saved")
    archive = saved.bucket / saved.manifest["archive"]
    assert saved.manifest["crc32c"] == crc32c_of(archive)
    assert saved.manifest["key"] == log[index_of(log, "compile cache saved")]["key"]
    assert saved.manifest["files"] > 0


def test_a_restart_restores_the_cache_before_the_engine_starts(
    saved: Saved, tiny_model: Path, launch: Callable[..., Any], tmp_path: Path
) -> None:
    """Same key on a fresh disk: the files are in place before vLLM's engine logs its first line,
    vLLM uses them, and nothing is uploaded again."""
    root = tmp_path / "root"
    server, log = serve(launch, tiny_model, saved.bucket, root, tmp_path / "second.log")
    try:
        restored = index_of(log, "compile cache restored")
        assert restored < index_of(log, "Initializing a V1 LLM engine")
        phases = log[index_of(log, "startup phases")]["phases"]
        assert phases["compile_cache_restore"]["end_s"] <= phases["engine_config"]["start_s"]
        assert (root / "torch_compile_cache").is_dir() and (root / "modelinfos").is_dir()
        log = wait_for(server, "compile cache present")
    finally:
        stop(server.child, grace_s=10)
    assert len(list((saved.bucket / "compile-cache").rglob("*.tar"))) == 1


def keeper_for(bucket: Path, model: Path, root: Path, *extra: str) -> Any:
    """The keeper the container builds for a start with these flags, against `bucket`."""
    from serving.app import compile_cache_keeper
    from serving.settings import Settings

    env = {"MODELDROP_STATE_BUCKET": str(bucket), "VLLM_CACHE_ROOT": str(root)}
    settings = Settings.load(["--model", str(model), *ARGS, *extra], env)
    with patch.dict(os.environ):  # the keeper sets the engine's cache folders for its start
        found = compile_cache_keeper(settings)
    assert found is not None
    return found


def test_other_engine_options_restore_nothing(
    saved: Saved, tiny_model: Path, tmp_path: Path
) -> None:
    """The container's own key for its first start's flags is the saved one; with one engine option
    changed the key differs and nothing is restored (the keeper the container builds, against the
    same bucket; the start that follows is a cold one, which `saved` already shows)."""
    keeper = keeper_for(saved.bucket, tiny_model, tmp_path)
    assert keeper.make_key().digest == saved.manifest["key"]
    other = keeper_for(saved.bucket, tiny_model, tmp_path, "--max-num-seqs", "8")
    assert other.restore() == "absent"
    assert other.key is not None and other.key.digest != saved.manifest["key"]
    assert not (tmp_path / "torch_compile_cache").exists()


def test_a_corrupt_archive_is_ignored_with_a_warning(
    saved: Saved, tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One byte flipped in the engine's own archive: the keeper the container builds warns, naming
    the crc32c, restores nothing and returns (the container then starts as a cold start does, which
    `saved` shows; the keeper's restore never raises, test_compile_cache.py)."""
    bucket = tmp_path / "bucket"
    shutil.copytree(saved.bucket, bucket)
    archive = bucket / saved.manifest["archive"]
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    root = tmp_path / "root"
    keeper = keeper_for(bucket, tiny_model, root)
    with caplog.at_level(logging.WARNING, logger="serving.compile_cache"):
        assert keeper.restore() == "ignored"
    (warning,) = [r for r in caplog.records if r.name == "serving.compile_cache"]
    assert warning.getMessage().startswith("compile cache not restored")
    assert "crc32c" in warning.__dict__["error"]
    assert not (root / "torch_compile_cache").exists()
