"""The whole story through the `modeldrop` CLI against a running local stack, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.stack import down, up
from local.stack_state import Ports, StackConfig

REPO = Path(__file__).resolve().parents[2]


def modeldrop(
    data_dir: Path, *args: str, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """`modeldrop ARGS` in its own process, pointed at the stack in `data_dir`."""
    env = {**os.environ, "MODELDROP_LOCAL_DIR": str(data_dir), "MODELDROP_PROFILE": "local"}
    for name in ("PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"):
        env.pop(name, None)  # the profile, not the test session, must point the SDKs
    return subprocess.run(
        [sys.executable, "-m", "modeldrop.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A local stack on free ports with fast sweep ticks, stopped by PID afterwards."""
    config = StackConfig(
        data_dir=tmp_path_factory.mktemp("stack"),
        ports=Ports().with_free_ports(),
        tick_s=2.0,
        memory_gcs=True,
    )
    up(config)
    try:
        yield config.data_dir
    finally:
        down(config.data_dir)


@pytest.mark.stack
def test_deploying_an_unknown_model_is_refused_with_exit_4(stack: Path) -> None:
    """The registry has no such model: exit 4 before anything is published, naming the upload to do."""
    done = modeldrop(stack, "deploy", "no-such-model", "--timeout", "60")
    assert done.returncode == 4, done.stderr
    assert "model no-such-model is not registered" in done.stderr
    assert "modeldrop upload" in done.stderr


@pytest.mark.stack
def test_a_command_that_fails_in_on_command_ends_with_exit_1(stack: Path) -> None:
    """Waking an endpoint nothing was torn down from is published, reported failed by on_command, exit 1."""
    done = modeldrop(stack, "wake", "nowhere", "--timeout", "60")
    assert done.returncode == 1, done.stderr
    assert "failed" in done.stdout and "nothing was torn down" in done.stdout


@pytest.mark.stack
def test_no_wait_prints_the_request_id_and_results_follow_shows_its_end(stack: Path) -> None:
    """--no-wait returns the request_id at once; `results --follow --request-id` prints its results and stops at the terminal one."""
    follower = subprocess.Popen(
        [sys.executable, "-m", "modeldrop.cli", "results", "--follow", "--json"]
        + ["--request-id", "e2e-nowait-1", "--timeout", "60"],
        env={**os.environ, "MODELDROP_LOCAL_DIR": str(stack), "MODELDROP_PROFILE": "local"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        # The follower subscribes first: Pub/Sub has no history for a new subscription.
        assert follower.stderr is not None
        assert "following" in follower.stderr.readline()
        done = modeldrop(stack, "wake", "nowhere", "--no-wait", "--request-id", "e2e-nowait-1")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "e2e-nowait-1"
    finally:
        out, _ = follower.communicate(timeout=90)
    assert follower.returncode == 1  # it stopped at the request's terminal result: failed
    results = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    mine = [r for r in results if r["request_id"] == "e2e-nowait-1"]
    assert mine and mine[-1]["terminal"] is True
    assert mine[-1]["status"] == "failed"


@pytest.mark.stack
def test_status_and_local_status_report_the_running_stack(stack: Path) -> None:
    """`status --json` reads Vertex, Monitoring and the state bucket; `local status` shows every part up."""
    done = modeldrop(stack, "status", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["profile"] == "local"
    assert {"models", "endpoints", "deployments", "operations"} <= report.keys()
    parts = modeldrop(stack, "local", "status", "--json", "--local-dir", str(stack))
    assert parts.returncode == 0, parts.stdout
    assert all(p["answers"] for p in json.loads(parts.stdout)["parts"])


@pytest.mark.stack
@pytest.mark.engine
@pytest.mark.timeout(480)
def test_the_demo_uploads_deploys_serves_and_is_torn_down_when_idle(tmp_path: Path) -> None:
    """`python -m local.demo` (what `make demo` runs): every step ok, tokens served, the idle sweep tears it down."""
    done = subprocess.run(
        [sys.executable, "-m", "local.demo", "--data-dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=450,
        check=False,
        cwd=REPO,
    )
    output = done.stdout
    assert done.returncode == 0, output[-4000:] + done.stderr[-4000:]
    for step in (
        "upload, wait for registered: ok",
        "deploy, wait for ready: ok",
        "predict (Vertex :predict): ok",
        "completion (openai client): ok",
        "streamed chat: ok",
        "streamed chat only, for 40s: not torn down: ok",
        "wait for the sweep to tear it down: ok",
        "stack down: ok",
    ):
        assert step in output
    assert "registered" in output and "ready" in output and "torn_down" in output
    assert "streamed chats (none counted by Monitoring); torn down 0 times" in output
    assert "demo passed" in output
