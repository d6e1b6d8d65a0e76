"""`make demo`: the whole story on this machine, step by step with timings, through the `modeldrop` CLI.

Starts its own local stack (free ports, its own data folder), builds a tiny random-weight model
(or takes --model DIR), uploads it, waits for `registered`, deploys it, sends a predict, a completion
and a streamed chat through the emulated Vertex endpoint, then streamed chat alone for twice the
idle TTL (Monitoring's prediction_count does not count it here, the pessimistic reading of Vertex;
the container's own activity record does), which must not be torn down; then it waits for the idle
sweep to tear it down and stops every process it started. Exits non-zero at the first step that fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from local.stack_state import Ports, StackConfig, default_data_dir

MODEL = "demo-tiny"
IDLE_TTL = "20s"
TTL_S = 20
# Monitoring as the pessimistic reading of Vertex: only predict and rawPredict counted in
# prediction_count (which routes Vertex counts is undocumented), so the streamed chats below are
# seen by the container's own activity record alone.
VERTEX_ARGS = ("--rule=counted_routes=predict,rawPredict",)


class StepFailed(RuntimeError):
    """A demo step did not do what it should; the message says what happened instead."""


@dataclass
class Timeline:
    """Each step's name and seconds, printed as it ends and as a table at the end."""

    steps: list[tuple[str, float, bool]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        print(f"\n==> {name}", flush=True)
        began = time.monotonic()
        ok = False
        try:
            yield
            ok = True
        finally:
            seconds = time.monotonic() - began
            self.steps.append((name, seconds, ok))
            print(f"<== {name}: {'ok' if ok else 'FAILED'} in {seconds:.1f}s", flush=True)

    def summary(self) -> str:
        width = max(len(name) for name, _, _ in self.steps)
        lines = [
            f"{name:<{width}}  {seconds:7.1f}s  {'ok' if ok else 'FAILED'}"
            for name, seconds, ok in self.steps
        ]
        lines.append(f"{'total':<{width}}  {time.monotonic() - self.started:7.1f}s")
        return "\n".join(lines)


def cli(data_dir: Path, *args: str, timeout_s: float = 600) -> str:
    """Run `modeldrop ARGS` as a user would (its own process); its stdout; StepFailed on a non-zero exit."""
    env = {**os.environ, "MODELDROP_LOCAL_DIR": str(data_dir), "MODELDROP_PROFILE": "local"}
    shown = " ".join(args)
    print(f"$ modeldrop {shown}", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "modeldrop.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=None,  # progress bars and notes go straight to the terminal
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.stdout:
        print(done.stdout, end="" if done.stdout.endswith("\n") else "\n", flush=True)
    if done.returncode != 0:
        raise StepFailed(f"`modeldrop {shown}` exited with {done.returncode}")
    return done.stdout


def wait_for_teardown(data_dir: Path, endpoint: str, timeout_s: float) -> dict[str, Any]:
    """Follow results until the sweep reports `torn_down` for `endpoint`; that result."""
    from modeldrop.cli.feed import PubSubResultFeed
    from modeldrop.cli.follow import format_result
    from modeldrop.cli.profile import resolve
    from modeldrop.results import Status

    profile = resolve("local", {}, local_dir=data_dir)
    profile.activate()
    deadline = time.monotonic() + timeout_s
    with PubSubResultFeed(profile.project, profile.results_topic) as feed:
        while time.monotonic() < deadline:
            for result in feed.pull(wait_s=5.0):
                print(format_result(result), flush=True)
                if result.status == Status.TORN_DOWN and result.endpoint == endpoint:
                    return result.model_dump(mode="json")
    raise StepFailed(f"no torn_down result for {endpoint} within {timeout_s:.0f}s")


@contextmanager
def torn_down_watch(data_dir: Path, endpoint: str) -> Iterator[Any]:
    """Subscribe to results now; yields a function giving the `torn_down` results for `endpoint`
    published since (it pulls what has arrived)."""
    from modeldrop.cli.feed import PubSubResultFeed
    from modeldrop.cli.profile import resolve
    from modeldrop.results import Status

    profile = resolve("local", {}, local_dir=data_dir)
    profile.activate()
    seen: list[str] = []
    with PubSubResultFeed(profile.project, profile.results_topic) as feed:

        def torn_down() -> list[str]:
            for result in feed.pull(wait_s=2.0):
                if result.status == Status.TORN_DOWN and result.endpoint == endpoint:
                    seen.append(result.message)
            return seen

        yield torn_down


def steady_chat(data_dir: Path, endpoint: str, seconds: float) -> int:
    """Streamed chats back to back for `seconds` through the endpoint's OpenAI route; how many."""
    from modeldrop.cli.profile import resolve
    from modeldrop.cli.serve import lookup, openai_client, served_model

    profile = resolve("local", {}, local_dir=data_dir)
    found = lookup(profile, endpoint)
    client = openai_client(profile, endpoint, found=found)
    model = served_model(profile, endpoint, found)
    deadline, count = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": f"chat {count}"}],
            max_tokens=16,
            stream=True,
        )
        if not any(chunk.choices for chunk in stream):
            raise StepFailed("a streamed chat came back empty")
        count += 1
    return count


def completion(data_dir: Path, endpoint: str) -> str:
    """A plain completion with the official `openai` client against the endpoint's OpenAI route."""
    from modeldrop.cli.profile import resolve
    from modeldrop.cli.serve import lookup, openai_client, served_model

    profile = resolve("local", {}, local_dir=data_dir)
    found = lookup(profile, endpoint)
    answer = openai_client(profile, endpoint, found=found).completions.create(
        model=served_model(profile, endpoint, found),
        prompt="The model weights bucket",
        max_tokens=24,
    )
    text = str(answer.choices[0].text)
    print(
        f"completion: {text!r} ({answer.usage.completion_tokens if answer.usage else '?'} tokens)"
    )
    if not text:
        raise StepFailed("the completion came back empty")
    return text


def run(
    model_dir: Path | None, data_dir: Path, keep: bool, vertex_args: tuple[str, ...] = ()
) -> int:
    from local.stack import down, up

    timeline = Timeline()
    config = StackConfig(
        data_dir=data_dir,
        ports=Ports().with_free_ports(),
        tick_s=2.0,
        default_idle_ttl=IDLE_TTL,
        deploy_grace="5s",
        memory_gcs=True,
        vertex_args=(*VERTEX_ARGS, *vertex_args),
    )
    failed: str | None = None
    stack_started = False
    scratch = Path(tempfile.mkdtemp(prefix="modeldrop-demo-"))
    try:
        with timeline.step("stack up"):
            up(config, progress=lambda line: print("   " + line, flush=True))
            stack_started = True
        if model_dir is None:
            with timeline.step("build the tiny model"):
                from local.tiny_model import build_tiny_model

                model_dir = build_tiny_model(scratch / "tiny")
                print(f"   {model_dir}: {sorted(p.name for p in model_dir.iterdir())}")
        with timeline.step("upload, wait for registered"):
            cli(data_dir, "upload", str(model_dir), "--model", MODEL, "--timeout", "300")
        with timeline.step("deploy, wait for ready"):
            cli(
                data_dir, "deploy", MODEL, "--idle-ttl", IDLE_TTL, "--timeout", "600", timeout_s=660
            )
        with timeline.step("predict (Vertex :predict)"):
            if not cli(
                data_dir, "predict", MODEL, "Hello from modeldrop", "--max-tokens", "16"
            ).strip():
                raise StepFailed("predict returned no prediction")
        with timeline.step("completion (openai client)"):
            completion(data_dir, MODEL)
        with timeline.step("streamed chat"):
            cli(data_dir, "chat", MODEL, "Say something about buckets.", "--max-tokens", "32")
        with timeline.step("status"):
            cli(data_dir, "status")
        with (
            torn_down_watch(data_dir, MODEL) as torn_down,
            timeline.step(f"streamed chat only, for {2 * TTL_S}s: not torn down"),
        ):
            chats = steady_chat(data_dir, MODEL, seconds=2 * TTL_S)
            if torn_down():
                raise StepFailed(f"torn down while in use: {torn_down()}")
            print(f"   {chats} streamed chats (none counted by Monitoring); torn down 0 times")
        with timeline.step(f"idle {IDLE_TTL}: wait for the sweep to tear it down"):
            torn = wait_for_teardown(data_dir, MODEL, timeout_s=180)
            print(f"   torn down: {torn.get('message')} {torn.get('details')}")
    except Exception as error:  # noqa: BLE001 - every failure ends the demo the same way
        failed = f"{type(error).__name__}: {error}"
    finally:
        if stack_started and not keep:
            with timeline.step("stack down"):
                down(data_dir, progress=lambda line: print("   " + line, flush=True))
        shutil.rmtree(scratch, ignore_errors=True)
    print("\n" + timeline.summary())
    if failed:
        print(f"\ndemo FAILED: {failed}\nlogs: {config.logs_dir}", file=sys.stderr)
        return 1
    print("\ndemo passed" + (f"; the stack still runs (data in {data_dir})" if keep else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.demo", description=__doc__)
    parser.add_argument(
        "--model", type=Path, help="a weights folder to use instead of the tiny model"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="the demo stack's data folder (default: demo/ in the local data folder)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the stack running at the end")
    parser.add_argument(
        "--vertex-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an extra flag for the Vertex emulator (repeatable), e.g. "
        "--vertex-arg=--fault=DeployModel=0.3:503 to rehearse failing deploys",
    )
    args = parser.parse_args(argv)
    if args.model is not None and not args.model.is_dir():
        parser.error(f"--model {args.model} is not a folder")
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the stack is still stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    data_dir = (args.data_dir or default_data_dir() / "demo").resolve()
    if data_dir.exists() and not args.keep:
        _clear_stale(data_dir)
    return run(args.model, data_dir, args.keep, tuple(args.vertex_arg))


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _clear_stale(data_dir: Path) -> None:
    from local.stack import running_state

    if running_state(data_dir) is not None:
        raise SystemExit(
            f"a demo stack already runs in {data_dir}: `modeldrop local down --local-dir {data_dir}`"
        )
    # Each demo starts from nothing: models and endpoints of an earlier run would change its story.
    shutil.rmtree(data_dir)


if __name__ == "__main__":
    sys.exit(main())
