"""The container's flags: every option of vLLM's own server parser, plus the container's group."""

from __future__ import annotations

import argparse
import json
import shlex
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

ENV_PREFIX = "MODELDROP_SERVING_"
ARGS_ENV = ENV_PREFIX + "ARGS"  # a JSON list or a shell-quoted string of flags
# vLLM server options the container cannot honour: it runs one API server in this process and
# listens where Vertex says (AIP_HTTP_PORT), over HTTP.
UNSUPPORTED = {
    "headless": "the container runs the API server and the engine together",
    "api_server_count": "the container runs one API server in-process",
    "grpc": "Vertex reaches the container over HTTP",
    "uds": "Vertex reaches the container over TCP",
}
# What a deployment's serving_args may not set: the registry pins these on the model (the weights,
# the name clients use, where Vertex reaches the container, and what the bucket policy allows).
DEPLOYMENT_OWNED = (
    "model",
    "model_tag",
    "served_model_name",
    "host",
    "port",
    "trust_remote_code",
    "allow_unsafe_weights",
)
# A deployment's own serving args, written by the control plane before it deploys:
# serving-args/<endpoint id>/<deployed model id>.json in the state bucket, {"args": [...], ...}.
# Vertex keeps containerSpec (args, env) on the Model, one per version, so per-deployment args
# can't ride there; the container finds its record from AIP_ENDPOINT_ID and AIP_DEPLOYED_MODEL_ID.
DEPLOYMENT_ARGS_PREFIX = "serving-args/"


def deployment_args_name(endpoint_id: str, deployed_model_id: str) -> str:
    return f"{DEPLOYMENT_ARGS_PREFIX}{endpoint_id}/{deployed_model_id}.json"


class FlagError(ValueError):
    """A flag is unknown, malformed or unsupported; the message names it."""


def _parser_class() -> Any:
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    class Parser(FlexibleArgumentParser):  # type: ignore[misc]
        def error(self, message: str) -> NoReturn:
            raise FlagError(message)

    return Parser


def parser() -> argparse.ArgumentParser:
    """vLLM's `make_arg_parser` (every engine and server option) plus the container's own flags."""
    from vllm.entrypoints.launchers.cli_args import make_arg_parser

    built: argparse.ArgumentParser = make_arg_parser(
        _parser_class()(
            prog="python -m serving",
            description="vLLM's OpenAI-compatible server behind Vertex AI's container contract. "
            f"Flags also come from {ARGS_ENV} (JSON list or shell words) and "
            f"{ENV_PREFIX}<FLAG> variables; the command line wins.",
        )
    )
    # None means "not given": the model then comes from AIP_STORAGE_URI, the port from AIP_HTTP_PORT.
    built.set_defaults(model=None, port=None, host=None)
    group = built.add_argument_group("modeldrop container")
    group.add_argument(
        "--allow-unsafe-weights",
        action="store_true",
        help="load pickle-based weights (.bin/.pt) as well as safetensors",
    )
    group.add_argument(
        "--cache-dir",
        default=f"{tempfile.gettempdir()}/modeldrop-weights",
        help="where gs:// weights and adapters are downloaded",
    )
    group.add_argument("--download-workers", type=_at_least(1), default=8)
    group.add_argument(
        "--max-body-bytes", type=_at_least(1024), default=4 * 1024 * 1024, help="largest body"
    )
    group.add_argument(
        "--max-json-depth", type=_at_least(2), default=64, help="deepest JSON nesting accepted"
    )
    group.add_argument(
        "--max-instances", type=_at_least(1), default=64, help="most instances in one predict"
    )
    group.add_argument(
        "--drain-grace-s",
        type=_positive,
        default=30.0,
        help="seconds in-flight requests get after SIGTERM",
    )
    group.add_argument(
        "--adapter-cache-size",
        type=_at_least(1),
        default=16,
        help="most LoRA adapters kept on local disk (least recently used evicted)",
    )
    group.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="neither restore vLLM's compile cache from the state bucket before the engine "
        "starts nor save it there once ready",
    )
    group.add_argument(
        "--compile-cache-max-bytes",
        type=_at_least(0),
        default=2 * 1024**3,
        help="largest compile cache saved to the state bucket (a larger one is not saved)",
    )
    return built


def _at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def env_argv(built: argparse.ArgumentParser, env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """Flags from MODELDROP_SERVING_<FLAG> and MODELDROP_SERVING_ARGS, and the variables no flag took."""
    argv: list[str] = []
    unused: list[str] = []
    by_env = {
        ENV_PREFIX + option[2:].replace("-", "_").upper(): (option, action)
        for action in built._actions
        for option in action.option_strings
        if option.startswith("--")
    }
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name == ARGS_ENV:
            continue
        value = env[name].strip()
        if name not in by_env:
            unused.append(name)
            continue
        option, action = by_env[name]
        if action.nargs == 0:  # a switch
            if value.lower() in ("1", "true", "yes", "on"):
                argv.append(option)
            elif value.lower() not in ("0", "false", "no", "off", ""):
                raise FlagError(f"{name} must be true or false, got {value!r}")
        elif value:
            argv += [option, value]
    return argv + split_args(env.get(ARGS_ENV, "")), unused


def split_args(text: str) -> list[str]:
    """MODELDROP_SERVING_ARGS: a JSON list of strings, or shell-quoted words."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError as error:
            raise FlagError(f"{ARGS_ENV} is not a JSON list: {error}") from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise FlagError(f"{ARGS_ENV} must be a JSON list of strings")
        return value
    try:
        return shlex.split(text)
    except ValueError as error:
        raise FlagError(f"{ARGS_ENV} is not shell words: {error}") from None


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parse `argv` with vLLM's parser and run vLLM's own checks of the combination."""
    from vllm.entrypoints.launchers.cli_args import validate_parsed_serve_args

    namespace = parser().parse_args(list(argv))
    for dest, reason in UNSUPPORTED.items():
        value = getattr(namespace, dest, None)
        if value and not (dest == "api_server_count" and value == 1):
            raise FlagError(f"--{dest.replace('_', '-')} is not supported: {reason}")
    try:
        validate_parsed_serve_args(namespace)
    except (TypeError, ValueError) as error:
        raise FlagError(str(error)) from None
    return namespace


def owned(namespace: argparse.Namespace) -> list[str]:
    """The flags in `namespace` (parsed from a deployment's args alone) that the registration owns."""
    return [
        f"{dest.replace('_', '-')} is set by the model's registration"
        for dest in DEPLOYMENT_OWNED
        if getattr(namespace, dest, None) not in (None, False)
    ]


def check(args: list[str]) -> list[str]:
    """Problems with a deployment's serving args (vLLM engine/server flags); empty when they are good."""
    problems: list[str] = []
    try:
        namespace = parse(args)
    except FlagError as error:
        return [str(error)]
    problems += owned(namespace)
    try:
        from vllm.engine.arg_utils import AsyncEngineArgs

        AsyncEngineArgs.from_cli_args(argparse.Namespace(**{**vars(namespace), "model": "m"}))
    except Exception as error:  # vLLM's own dataclass checks of the engine options
        problems.append(f"{type(error).__name__}: {error}")
    return problems
