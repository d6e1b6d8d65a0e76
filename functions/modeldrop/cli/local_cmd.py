"""`modeldrop local up|down|status|vertex`: the local stack from the terminal."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from modeldrop.cli.context import EXIT_ENVIRONMENT, EXIT_OK, Context, UsageError
from modeldrop.durations import parse_duration

if TYPE_CHECKING:
    from local.stack_state import StackConfig


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from local.stack_state import Ports
    from local.vertex.settings import parser as vertex_parser

    local = sub.add_parser(
        "local", help="run the whole stack on this machine (emulators + functions)"
    )
    verbs = local.add_subparsers(dest="verb", required=True, metavar="up|down|status|vertex")
    defaults = Ports()
    up = verbs.add_parser(
        "up", help="start the local stack in the background and wait until it answers"
    )
    for name, port in defaults.items():
        flag = "--" + name.replace("_", "-") + "-port"
        up.add_argument(flag, dest=f"port_{name}", type=int, default=port, help=f"default {port}")
    up.add_argument(
        "--free-ports", action="store_true", help="pick free ports instead of the defaults"
    )
    up.add_argument("--tick", default="10s", help="sweep tick interval (default 10s)")
    up.add_argument(
        "--default-idle-ttl", default="30m", help="idle TTL when a deploy names none (default 30m)"
    )
    up.add_argument(
        "--deploy-grace",
        default="60s",
        help="no idle teardown this soon after a deploy (default 60s)",
    )
    up.add_argument(
        "--wake-timeout",
        default="3m",
        help="how long the gateway holds a request while its endpoint wakes (default 3m)",
    )
    up.add_argument(
        "--memory", action="store_true", help="keep GCS objects in memory, not in the data folder"
    )
    up.add_argument(
        "--serving-memory-utilization",
        type=float,
        default=0.15,
        help="vLLM's memory share per deployment (on the CPU: of RAM; default 0.15)",
    )
    up.add_argument(
        "--fidelity",
        choices=("faithful", "legacy"),
        help="how the Vertex emulator plays Vertex: faithful (Google's documented rules and modelled "
        "durations; the default) or legacy (instant, forgiving); default $MODELDROP_VERTEX_FIDELITY "
        "or faithful",
    )
    up.add_argument(
        "--time-scale",
        type=float,
        help="multiplies the modelled durations (0.01: a 600 s CPU deploy takes 6 s; 0: instant); "
        "default $MODELDROP_VERTEX_TIME_SCALE or 0.01",
    )
    up.add_argument(
        "--vertex-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="a flag for the Vertex emulator, repeatable: --vertex-arg=--stockout, "
        "--vertex-arg=--fault --vertex-arg='DeployModel=0.3:503' (see `modeldrop local vertex --help`)",
    )
    up.add_argument("--project", default="modeldrop-local", help="the emulated project id")
    up.add_argument("--region", default="us-central1", help="the emulated region")
    up.set_defaults(handler=local_up)
    down = verbs.add_parser("down", help="stop every process of the local stack (by PID)")
    down.set_defaults(handler=local_down)
    status = verbs.add_parser("status", help="which parts run, where, and their logs")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=local_status)
    # The emulator's own flags, parsed here (a REMAINDER after a subcommand drops leading options).
    vertex = verbs.add_parser(
        "vertex",
        help="run only the Vertex AI emulator in the foreground",
        description=vertex_parser().description,
        parents=[vertex_parser()],
        add_help=False,
    )
    vertex.set_defaults(handler=local_vertex)


def _data_dir(ctx: Context) -> Path:
    from local.stack_state import default_data_dir

    chosen = getattr(ctx.args, "local_dir", None)
    return Path(chosen).expanduser().resolve() if chosen else default_data_dir(ctx.env)


def local_up(ctx: Context) -> int:
    from local.stack import running_state, up

    config = stack_config(ctx)
    started = time.monotonic()
    if running_state(config.data_dir) is None:
        ctx.say(f"starting the local stack in {config.data_dir} (logs in {config.logs_dir})")
    state = up(config, progress=ctx.say)
    ctx.say(
        f"the local stack is up in {time.monotonic() - started:.1f}s; `modeldrop local down` stops it"
    )
    ctx.print(f"export PUBSUB_EMULATOR_HOST={state.pubsub_host}")
    ctx.print(f"export STORAGE_EMULATOR_HOST={state.storage_host}")
    ctx.print(f"export MODELDROP_VERTEX_API_ENDPOINT={state.vertex_endpoint}")
    if state.gateway_url:
        # The front door speaks the OpenAI API: the openai client reads OPENAI_BASE_URL.
        ctx.print(f"export MODELDROP_GATEWAY_URL={state.gateway_url}")
        ctx.print(f"export OPENAI_BASE_URL={state.gateway_url}/v1")
    # gcloud storage needs no credentials against the local bucket, and the front's endpoint.
    front = state.env.get("CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE")
    if front:
        ctx.print(f"export CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE={front}")
        ctx.print("export CLOUDSDK_AUTH_DISABLE_CREDENTIALS=true")
    return EXIT_OK


def stack_config(ctx: Context) -> StackConfig:
    """The stack `local up` starts, from its flags and MODELDROP_VERTEX_* in the environment."""
    from local.stack_state import Ports, StackConfig

    a = ctx.args
    ports = Ports(**{name: getattr(a, f"port_{name}") for name, _ in Ports().items()})
    if a.free_ports:
        ports = ports.with_free_ports()
    return StackConfig(
        data_dir=_data_dir(ctx),
        ports=ports,
        project=a.project,
        region=a.region,
        tick_s=float(parse_duration(a.tick)) or 1.0,
        default_idle_ttl=a.default_idle_ttl,
        deploy_grace=a.deploy_grace,
        wake_timeout=_wake_timeout(a.wake_timeout),
        memory_gcs=a.memory,
        serving_memory_utilization=a.serving_memory_utilization,
        fidelity=_fidelity(a.fidelity, ctx.env.get("MODELDROP_VERTEX_FIDELITY")),
        time_scale=_time_scale(a.time_scale, ctx.env.get("MODELDROP_VERTEX_TIME_SCALE")),
        vertex_args=tuple(a.vertex_arg),
    )


def _wake_timeout(text: str) -> str:
    try:
        parse_duration(text)
    except ValueError as error:
        raise UsageError(f"--wake-timeout: {error}") from error
    return text


def _fidelity(flag: str | None, env: str | None) -> str:
    chosen = flag or env or "faithful"
    if chosen not in ("faithful", "legacy"):
        raise UsageError(f"MODELDROP_VERTEX_FIDELITY must be faithful or legacy, not {chosen!r}")
    return chosen


def _time_scale(flag: float | None, env: str | None) -> float:
    if flag is None and env:
        try:
            flag = float(env)
        except ValueError:
            raise UsageError(f"MODELDROP_VERTEX_TIME_SCALE must be a number, not {env!r}") from None
    scale = 0.01 if flag is None else flag
    if scale < 0:
        raise UsageError(f"the time scale must not be negative, got {scale:g}")
    return scale


def local_down(ctx: Context) -> int:
    from local.stack import down

    stopped = down(_data_dir(ctx), progress=ctx.say)
    ctx.say(f"the local stack is down ({len(stopped)} processes stopped)")
    return EXIT_OK


def local_status(ctx: Context) -> int:
    from local.stack import status

    found = status(_data_dir(ctx))
    if found is None:
        if ctx.args.json:
            ctx.print(json.dumps({"running": False}))
        else:
            ctx.say(f"no local stack in {_data_dir(ctx)}: `modeldrop local up` starts one")
        return EXIT_ENVIRONMENT
    state, parts = found
    healthy = all(p.answers for p in parts)
    if ctx.args.json:
        ctx.print(
            json.dumps(
                {
                    "running": healthy,
                    "started_at": state.started_at.isoformat(),
                    "data_dir": state.data_dir,
                    "env": state.env,
                    "parts": [p.__dict__ for p in parts],
                },
                indent=2,
            )
        )
        return EXIT_OK if healthy else EXIT_ENVIRONMENT
    from modeldrop.cli.table import render

    ctx.print(f"local stack in {state.data_dir}, started {state.started_at:%Y-%m-%d %H:%M:%S} UTC")
    rows = [
        [
            p.name,
            str(p.pid),
            p.state,
            p.url or "-",
            p.log,
        ]
        for p in parts
    ]
    ctx.print(render(["part", "pid", "state", "url", "log"], rows))
    return EXIT_OK if healthy else EXIT_ENVIRONMENT


def local_vertex(ctx: Context) -> int:
    from local.vertex.__main__ import run

    code: int = run(ctx.args)
    return code
