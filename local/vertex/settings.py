"""The emulator's configuration, parsed once from the command line into a frozen value."""

from __future__ import annotations

import argparse
import fnmatch
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from local.vertex.faults import FaultConfig, parse_latency, parse_rule, parse_stockout
from local.vertex.fidelity import PRESETS, Fidelity, build

# modeldrop's serving image (any registry, any tag) runs as `python -m serving`.
SERVING_PATTERNS = ("*/serving", "*/serving:*", "*/modeldrop-serving", "*/modeldrop-serving:*")
# Defaults for that image, below the emulator's environment and --deployment-env: the emulator
# reaches deployments on loopback, so they need not listen on every interface.
SERVING_DEFAULT_ENV = {"MODELDROP_SERVING_HOST": "127.0.0.1"}
# Where the stack, the reliability plane and test launchers choose the fidelity without a flag:
# they start the emulator with their own environment, so these pass through unchanged.
FIDELITY_ENV = "MODELDROP_VERTEX_FIDELITY"
TIME_SCALE_ENV = "MODELDROP_VERTEX_TIME_SCALE"
RULES_ENV = "MODELDROP_VERTEX_RULES"  # KEY=VALUE;KEY=VALUE


@dataclass(frozen=True)
class Settings:
    """Everything the emulator reads at start; nothing reads the environment after this."""

    host: str = "127.0.0.1"
    port: int = 8090
    data_dir: Path | None = None
    image_map: tuple[tuple[str, tuple[str, ...]], ...] = ()
    deployment_env: Mapping[str, str] = field(default_factory=dict)
    deploy_timeout_s: float = 900.0
    health_interval_s: float = 1.0
    faults: FaultConfig = field(default_factory=FaultConfig)
    seed: int | None = None
    fidelity: Fidelity = field(default_factory=Fidelity)
    # The emulator's own environment, captured once: deployments inherit it (emulator hosts,
    # vLLM CPU settings) the way a container inherits its image's environment.
    base_env: Mapping[str, str] = field(default_factory=dict)

    def command_for(self, image_uri: str) -> list[str] | None:
        """The local command an image runs as: the image map first, then modeldrop's serving image."""
        for pattern, command in self.image_map:
            if fnmatch.fnmatchcase(image_uri, pattern):
                return list(command)
        if self.is_serving(image_uri):
            return [sys.executable, "-m", "serving"]
        return None

    def is_serving(self, image_uri: str) -> bool:
        """Whether `image_uri` runs as modeldrop's serving image (the image map did not claim it)."""
        if any(fnmatch.fnmatchcase(image_uri, pattern) for pattern, _ in self.image_map):
            return False
        return any(fnmatch.fnmatchcase(image_uri, p) for p in SERVING_PATTERNS)


def _pair(text: str, what: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{what} must look like KEY=VALUE, got {text!r}")
    return key, value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m local.vertex",
        description="Vertex AI + Cloud Monitoring emulator that runs deployments as local processes.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8090, help="port for the REST API (default 8090)")
    p.add_argument(
        "--data-dir",
        type=Path,
        help="where state and deployment logs live; without it, state is kept in memory only",
    )
    p.add_argument(
        "--image-map",
        action="append",
        default=[],
        metavar="PATTERN=COMMAND",
        help="run images matching the glob PATTERN as COMMAND (shell-quoted); repeatable",
    )
    p.add_argument(
        "--deployment-env",
        action="append",
        default=[],
        metavar="KEY=VAL",
        help="extra environment for every deployment process; repeatable",
    )
    p.add_argument(
        "--deploy-timeout",
        type=float,
        default=900.0,
        metavar="SECONDS",
        help="how long a deployment may take to answer its health route (default 900)",
    )
    p.add_argument(
        "--health-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often running deployments are checked (default 1)",
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="METHOD=RATE[:CODE]",
        help="fail calls to METHOD (a glob) at RATE with CODE 429, 500 or 503; repeatable",
    )
    p.add_argument(
        "--latency-ms",
        action="append",
        default=[],
        metavar="[METHOD=]MILLIS",
        help="add latency to calls to METHOD (default every method); repeatable",
    )
    p.add_argument(
        "--stockout",
        action="append",
        nargs="?",
        const="*",
        metavar="ACCELERATOR[@REGION],...",
        help="deploys asking for these accelerators (bare: every accelerator; *@REGION: every "
        "one in REGION) fail on their operation with RESOURCE_EXHAUSTED; repeatable",
    )
    p.add_argument(
        "--deploy-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long before starting each deployment (slow deploys)",
    )
    p.add_argument(
        "--fidelity",
        choices=PRESETS,
        help=f"legacy (instant, forgiving; the default) or faithful (Vertex's rules and "
        f"timings); default ${FIDELITY_ENV} or legacy",
    )
    p.add_argument(
        "--time-scale",
        type=float,
        metavar="FACTOR",
        help=f"multiply modelled durations (0.02 turns 15 minutes into 18 s; 0 = instant); "
        f"default ${TIME_SCALE_ENV} or 1",
    )
    p.add_argument(
        "--rule",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one rule of the preset (e.g. concurrent_ops=allow, "
        "counted_routes=predict,rawPredict,streamRawPredict, duration.deploy_gpu=900); repeatable",
    )
    p.add_argument("--fault-seed", type=int, help="seed for fault draws (reproducible failures)")
    p.add_argument("--seed", type=int, help="seed for generated ids and traffic routing")
    p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return p


def fidelity_from(args: argparse.Namespace, env: Mapping[str, str]) -> Fidelity:
    """The preset from the flag or the environment, its time scale, and every override."""
    preset = args.fidelity or env.get(FIDELITY_ENV) or "legacy"
    scale_text = env.get(TIME_SCALE_ENV)
    time_scale = args.time_scale if args.time_scale is not None else None
    if time_scale is None and scale_text:
        try:
            time_scale = float(scale_text)
        except ValueError as error:
            raise ValueError(f"{TIME_SCALE_ENV} must be a number, not {scale_text!r}") from error
    texts = [t for t in env.get(RULES_ENV, "").split(";") if t.strip()] + list(args.rule)
    rules = dict(_pair(t.strip(), "--rule") for t in texts)
    return build(preset, time_scale, rules)


def from_args(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> Settings:
    image_map = []
    for text in args.image_map:
        pattern, command = _pair(text, "--image-map")
        image_map.append((pattern, tuple(shlex.split(command))))
    faults = FaultConfig(
        rules=[parse_rule(t) for t in args.fault],
        latency_ms=dict(parse_latency(t) for t in args.latency_ms),
        stockout=parse_stockout(args.stockout),
        deploy_delay_s=args.deploy_delay,
        seed=args.fault_seed,
    )
    return Settings(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        image_map=tuple(image_map),
        deployment_env=dict(_pair(t, "--deployment-env") for t in args.deployment_env),
        deploy_timeout_s=args.deploy_timeout,
        health_interval_s=args.health_interval,
        faults=faults,
        seed=args.seed,
        fidelity=fidelity_from(args, env),
        base_env=dict(env),
    )
