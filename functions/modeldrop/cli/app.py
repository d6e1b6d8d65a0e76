"""The `modeldrop` command line: parse arguments, run one command, map errors to exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from modeldrop.cli import actions, local_cmd, overview, serve
from modeldrop.cli.context import (
    EXIT_ENVIRONMENT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    Context,
    NotFound,
    Unreachable,
    UsageError,
)
from modeldrop.cli.follow import FollowTimeout
from modeldrop.errors import ConfigError, PermanentError, TransientError

EPILOG = """exit codes: 0 done, 1 the request failed or was rejected, 2 bad arguments,
3 no local stack / missing configuration / a service unreachable, 4 unknown model or endpoint,
5 no final result within --timeout (the work may still finish), 130 interrupted"""


def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where (default: the local stack)")
    group.add_argument(
        "--profile",
        help="'local' (default, or $MODELDROP_PROFILE), 'gcp', or a name in profiles.toml",
    )
    group.add_argument("--project", help="Google Cloud project (GCP profiles)")
    group.add_argument("--region", help="Vertex AI region (GCP profiles; default us-central1)")
    group.add_argument("--weights-bucket", help="the weights bucket (GCP profiles)")
    group.add_argument("--state-bucket", help="the state bucket (GCP profiles)")
    group.add_argument(
        "--local-dir", help="the local stack's data folder (default .local/ in the checkout)"
    )


def _waiting(parser: argparse.ArgumentParser, timeout: float) -> None:
    parser.add_argument(
        "--no-wait", action="store_true", help="publish, print the request_id, return"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=timeout,
        help=f"seconds to follow results (default {timeout:g})",
    )
    parser.add_argument("--request-id", help="idempotency key (default: a fresh one)")
    parser.add_argument("--json", action="store_true", help="print the final result as JSON")


def _via_gateway(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--via-gateway",
        action="store_true",
        help="go through the front door (the gateway), which wakes a torn-down endpoint and holds "
        "the request until it answers; with chat, --model then names an adapter",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modeldrop",
        description="Self-host open LLMs on Google Cloud (or on this machine): upload weights, "
        "deploy, serve, and let idle deployments go away.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("upload", help="upload a weights folder as a new model version")
    p.add_argument("directory", help="folder with config.json, tokenizer files and *.safetensors")
    p.add_argument("--model", required=True, help="model name ([a-z0-9-], up to 63)")
    p.add_argument(
        "--version", help="version name (default: derived from the content, so a rerun resumes)"
    )
    p.add_argument("--parallel", type=int, default=8, help="files uploaded at once (default 8)")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="don't refuse .bin/.pt here (the bucket policy still decides)",
    )
    p.add_argument(
        "--allow-remote-code", action="store_true", help="don't refuse auto_map/.py here"
    )
    _waiting(p, 600)
    p.set_defaults(handler=actions.upload)

    p = sub.add_parser(
        "deploy",
        help="deploy a model version on an endpoint (created if needed)",
        usage="modeldrop deploy MODEL [options] [-- SERVING_ARG ...]",
        epilog="Words after `--` are vLLM engine and server flags for this deployment, applied "
        "after the model's own, e.g. `modeldrop deploy gemma -- --max-model-len 2048 "
        "--enable-prefix-caching`; flags vLLM does not know are refused before anything is sent.",
    )
    p.add_argument("model")
    p.add_argument("--version", help="version folder (default: the latest registered)")
    p.add_argument("--endpoint", help="endpoint id (default: the model's name)")
    p.add_argument(
        "--machine-type", help="Vertex machine type (default: derived from the accelerator)"
    )
    p.add_argument(
        "--accelerator",
        help="NVIDIA_L4 (the default), NVIDIA_H100_80GB, ..., or 'none'/'cpu' for CPU only",
    )
    p.add_argument("--accelerator-count", type=int, help="accelerators per replica (default 1)")
    p.add_argument("--min-replicas", type=int, help="default 1")
    p.add_argument("--max-replicas", type=int)
    p.add_argument(
        "--idle-ttl", help="undeploy after this long without traffic: 90s, 30m, 2h; 0 never"
    )
    p.add_argument(
        "--keep-warm",
        action=argparse.BooleanOptionalAction,
        help="never undeploy for idleness (--no-keep-warm undoes it; unset keeps the endpoint's)",
    )
    p.add_argument("--traffic", type=int, help="percent of the endpoint's traffic (default 100)")
    p.add_argument(
        "--placement",
        action="append",
        metavar="[COUNTx]ACCELERATOR[@MACHINE_TYPE]",
        help="a machine to try, in order, instead of --accelerator/--machine-type; the next is "
        "tried on a stockout (never on a quota refusal): --placement NVIDIA_L4 --placement "
        "2xNVIDIA_L4@g2-standard-24 --placement cpu@n1-standard-8; repeatable",
    )
    p.add_argument(
        "--idle-policy",
        choices=("teardown", "scale-to-zero"),
        help="teardown (the default: the sweep undeploys after --idle-ttl, wake brings it back) "
        "or scale-to-zero (Vertex's v1beta1 Preview scales it to zero itself; TTL 5m-8h)",
    )
    _waiting(p, 5400)
    p.set_defaults(handler=actions.deploy)

    p = sub.add_parser("undeploy", help="undeploy one version, or everything, from an endpoint")
    p.add_argument("endpoint")
    p.add_argument("--version", help="the version to undeploy (default: every deployment)")
    _waiting(p, 1800)
    p.set_defaults(handler=actions.undeploy)

    p = sub.add_parser("scale", help="change a deployment's replica range")
    p.add_argument("endpoint")
    p.add_argument("--version")
    p.add_argument("--min-replicas", type=int, required=True)
    p.add_argument("--max-replicas", type=int)
    _waiting(p, 1800)
    p.set_defaults(handler=actions.scale)

    p = sub.add_parser("traffic", help="split an endpoint's traffic between versions (a canary)")
    p.add_argument("endpoint")
    p.add_argument("split", nargs="+", metavar="VERSION=PERCENT")
    _waiting(p, 600)
    p.set_defaults(handler=actions.traffic)

    p = sub.add_parser("delete-endpoint", help="delete an endpoint")
    p.add_argument("endpoint")
    p.add_argument("--force", action="store_true", help="undeploy what it serves first")
    _waiting(p, 1800)
    p.set_defaults(handler=actions.delete_endpoint)

    p = sub.add_parser("wake", help="bring back what the idle sweep tore down on an endpoint")
    p.add_argument("endpoint")
    _waiting(p, 5400)
    p.set_defaults(handler=actions.wake)

    p = sub.add_parser(
        "register", help="register a folder already in the bucket (copied without the CLI)"
    )
    p.add_argument("model")
    p.add_argument("version")
    _waiting(p, 600)
    p.set_defaults(handler=actions.register)

    p = sub.add_parser("status", help="models, endpoints, deployments, operations, idle timers")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=overview.status)

    p = sub.add_parser("results", help="print results as they are published")
    p.add_argument("--follow", "-f", action="store_true", help="keep following (Ctrl-C stops)")
    p.add_argument("--request-id", help="only this request's results, until its final one")
    p.add_argument("--timeout", type=float, help="stop after this many seconds")
    p.add_argument("--json", action="store_true", help="one JSON result per line")
    p.set_defaults(handler=actions.results)

    p = sub.add_parser("predict", help="Vertex :predict on an endpoint (instances envelope)")
    p.add_argument("endpoint")
    p.add_argument("prompt", nargs="*", help="one instance per prompt")
    p.add_argument("--instances", help="the instances as a JSON list instead")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float)
    p.add_argument("--json", action="store_true", help="print the whole response")
    _via_gateway(p)
    p.set_defaults(handler=serve.predict)

    p = sub.add_parser("chat", help="chat with an endpoint, streaming the answer (OpenAI API)")
    p.add_argument("endpoint")
    p.add_argument("message", nargs="*", help="the message (default: read stdin)")
    p.add_argument("--system", help="a system message")
    p.add_argument("--model", help="the served model name (default: the endpoint's deployed model)")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float)
    _via_gateway(p)
    p.set_defaults(handler=serve.chat)

    local_cmd.add_parsers(sub)
    for command_parser in sub.choices.values():
        if command_parser.prog != "modeldrop local":
            _common(command_parser)
    for verb in ("up", "down", "status"):
        local_parser = sub.choices["local"]
        verbs = next(a for a in local_parser._actions if isinstance(a, argparse._SubParsersAction))
        verbs.choices[verb].add_argument(
            "--local-dir", help="the stack's data folder (default .local/ in the checkout)"
        )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; for `deploy`, the words after the first `--` are its serving args
    (split off first: argparse would read `--max-model-len` there as one of modeldrop's options)."""
    words = list(sys.argv[1:] if argv is None else argv)
    serving_args: list[str] = []
    if words[:1] == ["deploy"] and "--" in words:
        cut = words.index("--")
        words, serving_args = words[:cut], words[cut + 1 :]
    args = build_parser().parse_args(words)
    if args.command == "deploy":
        args.serving_args = serving_args
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    ctx = Context(args)
    try:
        code: int = args.handler(ctx)
        return code
    except UsageError as error:
        return _fail(ctx, error, error.reasons, EXIT_USAGE)
    except NotFound as error:
        return _fail(ctx, error, [], EXIT_NOT_FOUND)
    except FollowTimeout as error:
        return _fail(ctx, error, [], EXIT_TIMEOUT)
    except (ConfigError, Unreachable, TransientError) as error:
        return _fail(ctx, error, [], EXIT_ENVIRONMENT)
    except PermanentError as error:
        return _fail(ctx, error, error.reasons, EXIT_FAILED)
    except KeyboardInterrupt:
        ctx.say("interrupted")
        return EXIT_INTERRUPTED
    except RuntimeError as error:  # StackError and the process helpers' errors
        if type(error).__name__ in ("StackError", "ProcessError", "EmulatorMissing"):
            return _fail(ctx, error, [], EXIT_ENVIRONMENT)
        raise


def _fail(ctx: Context, error: Exception, reasons: list[str], code: int) -> int:
    ctx.say(f"error: {error}")
    for reason in reasons:
        if reason != str(error):
            ctx.say(f"  - {reason}")
    return code


def run() -> None:
    sys.exit(main())
