"""The commands that change things: upload, and the control commands published to the commands topic."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modeldrop.cli.context import EXIT_OK, Context, NotFound, UsageError
from modeldrop.cli.feed import PubSubResultFeed
from modeldrop.cli.follow import exit_code, follow, format_result, new_request_id
from modeldrop.cli.transfer import Transfer
from modeldrop.cli.upload import (
    check,
    checksums,
    content_version,
    describe,
    manifest_bytes,
    plan,
    run_uploads,
    scan,
)
from modeldrop.commands import parse_command
from modeldrop.errors import PermanentError
from modeldrop.naming import model_name_problem, version_name_problem
from modeldrop.pubsub import PubSubPublisher
from modeldrop.validation import Policy


def upload(ctx: Context) -> int:
    args = ctx.args
    directory = Path(args.directory).expanduser()
    problems = [p for p in (model_name_problem(args.model),) if p]
    if args.version:
        problems += [p for p in (version_name_problem(args.version),) if p]
    if problems:
        raise UsageError("bad name", problems)
    files, notes = scan(directory)
    for note in notes:
        ctx.say(f"note: {note}")
    policy = Policy(allow_pickle=args.allow_pickle, allow_remote_code=args.allow_remote_code)
    # The version name is not known yet when it derives from the content: check with a stand-in.
    problems = check(args.model, args.version or "v-check", files, policy)
    if problems:
        raise UsageError(f"{directory} would be rejected; nothing was uploaded", problems)
    workers = args.parallel
    crcs = checksums(files, workers, ctx.err)
    version = args.version or content_version(files, crcs)
    profile = ctx.profile()
    transfer = Transfer(profile.project, profile.weights_bucket)
    upload_plan = plan(transfer, args.model, version, files, crcs)
    if upload_plan.complete:
        ctx.print(
            f"{upload_plan.folder.uri} is already uploaded (its manifest is there): nothing to do"
        )
        return EXIT_OK
    ctx.say(describe(upload_plan))
    started = time.monotonic()
    request_id = args.request_id or new_request_id("upload")
    try:
        seconds = run_uploads(transfer, upload_plan, workers, ctx.err, request_id)
    except KeyboardInterrupt:
        ctx.say(
            f"interrupted: run the same command (with --version {version}) to resume; "
            "files already uploaded are skipped"
        )
        raise
    sent = sum(f.size for f in upload_plan.to_upload)
    ctx.say(
        f"uploaded {len(upload_plan.to_upload)} files in {seconds:.1f}s ({_rate(sent, seconds)})"
    )
    manifest = manifest_bytes(upload_plan, request_id)
    if args.no_wait:
        transfer.write_manifest(upload_plan.manifest_name, manifest)
        ctx.print(request_id)
        return EXIT_OK
    # Subscribe before the manifest lands: the result may be published within milliseconds.
    with PubSubResultFeed(profile.project, profile.results_topic, request_id) as feed:
        transfer.write_manifest(upload_plan.manifest_name, manifest)
        ctx.say(f"manifest written ({request_id}); waiting for the upload to be registered")
        result = follow(feed, request_id, args.timeout, ctx.out)
    ctx.say(f"done in {time.monotonic() - started:.1f}s")
    return exit_code(result)


def _rate(count: int, seconds: float) -> str:
    from modeldrop.cli.progress import human_bytes

    return f"{human_bytes(count / seconds)}/s" if seconds > 0 else "-"


CPU_ONLY = ("none", "cpu")


def deploy(ctx: Context) -> int:
    a = ctx.args
    body = deploy_body(a)
    return publish_and_follow(ctx, body, lambda: _check_registered(ctx, a.model, a.version))


def deploy_body(a: Any) -> dict[str, Any]:
    """The deploy command for parsed arguments `a` (without request_id and issued_at)."""
    # Only what the user set is sent: the command's own defaults apply to the rest, and a redeploy
    # keeps the endpoint's TTL and keep-warm setting unless the user changes them.
    body = _given(
        action="deploy",
        model=a.model,
        version=a.version,
        endpoint=a.endpoint,
        machine_type=a.machine_type,
        accelerator_count=a.accelerator_count,
        min_replicas=a.min_replicas,
        max_replicas=a.max_replicas,
        idle_ttl=a.idle_ttl,
        keep_warm=a.keep_warm,
        traffic_percent=a.traffic,
        idle_policy=getattr(a, "idle_policy", None),
    )
    given = getattr(a, "placement", None)
    if given:
        if a.accelerator is not None or a.machine_type or a.accelerator_count:
            raise UsageError(
                "--placement names the machines: leave out --accelerator, --machine-type and "
                "--accelerator-count"
            )
        body["placements"] = [placement(text) for text in given]
    serving_args = list(getattr(a, "serving_args", None) or [])
    if serving_args:
        body["serving_args"] = serving_args
    if a.accelerator is not None:
        # `none`/`cpu` is the command's JSON null (CPU only), not "unset" (the default GPU).
        body["accelerator"] = None if a.accelerator.lower() in CPU_ONLY else a.accelerator
    return body


_PLACEMENT = re.compile(r"(?:(\d{1,2})x)?([A-Za-z0-9_]{1,63})(?:@([a-z0-9-]{1,63}))?")


def placement(text: str) -> dict[str, Any]:
    """`[COUNTx]ACCELERATOR[@MACHINE_TYPE]` (`cpu`/`none` for CPU only) as a command placement."""
    found = _PLACEMENT.fullmatch(text.strip())
    if found is None:
        raise UsageError(
            f"bad --placement {text!r}: write [COUNTx]ACCELERATOR[@MACHINE_TYPE], e.g. NVIDIA_L4, "
            "2xNVIDIA_L4@g2-standard-24 or cpu@n1-standard-8"
        )
    count, accelerator, machine = found.groups()
    cpu = accelerator.lower() in CPU_ONLY
    if cpu and count:
        raise UsageError(f"bad --placement {text!r}: a CPU placement takes no count")
    body: dict[str, Any] = {"accelerator": None if cpu else accelerator}
    if count:
        body["accelerator_count"] = int(count)
    if machine:
        body["machine_type"] = machine
    return body


def _given(**fields: Any) -> dict[str, Any]:
    """The fields the user gave (argparse leaves the rest None)."""
    return {k: v for k, v in fields.items() if v is not None}


def _check_registered(ctx: Context, model: str, version: str | None) -> None:
    """NotFound (exit 4) before publishing when the registry has no such model or version."""
    from modeldrop.naming import version_alias
    from modeldrop.vertex import GapicVertex

    if model_name_problem(model) or (version and version_name_problem(version)):
        return  # the command's own validation names the problem
    profile = ctx.profile()
    vertex = GapicVertex(profile.project, profile.region, profile.vertex_api_endpoint)
    alias = version_alias(version) if version else "latest"
    if vertex.model_version(model, alias) is None:
        which = f"version {version} of model {model}" if version else f"model {model}"
        raise NotFound(
            f"{which} is not registered in {profile.project}/{profile.region}: "
            f"`modeldrop upload DIR --model {model}` first, or see `modeldrop status`"
        )


def undeploy(ctx: Context) -> int:
    body = _given(action="undeploy", endpoint=ctx.args.endpoint, version=ctx.args.version)
    return publish_and_follow(ctx, body)


def scale(ctx: Context) -> int:
    a = ctx.args
    body = _given(
        action="scale",
        endpoint=a.endpoint,
        version=a.version,
        min_replicas=a.min_replicas,
        max_replicas=a.max_replicas,
    )
    return publish_and_follow(ctx, body)


def traffic(ctx: Context) -> int:
    split: dict[str, int] = {}
    for item in ctx.args.split:
        version, sep, percent = item.partition("=")
        if not sep or not percent.strip().isdigit():
            raise UsageError(f"bad split {item!r}: write VERSION=PERCENT, e.g. v1=90 v2=10")
        split[version] = int(percent)
    return publish_and_follow(
        ctx, {"action": "traffic", "endpoint": ctx.args.endpoint, "split": split}
    )


def delete_endpoint(ctx: Context) -> int:
    body = _given(action="delete-endpoint", endpoint=ctx.args.endpoint, force=ctx.args.force)
    return publish_and_follow(ctx, body)


def wake(ctx: Context) -> int:
    return publish_and_follow(ctx, {"action": "wake", "endpoint": ctx.args.endpoint})


def register(ctx: Context) -> int:
    body = _given(action="register", model=ctx.args.model, version=ctx.args.version)
    return publish_and_follow(ctx, body)


def publish_and_follow(
    ctx: Context, body: dict[str, Any], precheck: Callable[[], None] | None = None
) -> int:
    """Validate the command here (nothing is sent if it is bad), publish it, follow its results."""
    command = dict(body)
    command["request_id"] = ctx.args.request_id or new_request_id(str(body["action"]))
    command["issued_at"] = datetime.now(UTC).isoformat()
    try:
        parse_command(command)
    except PermanentError as error:
        raise UsageError(
            f"this {body['action']} command is not valid; nothing was sent", error.reasons
        ) from error
    if precheck is not None:
        precheck()
    profile = ctx.profile()
    publisher = PubSubPublisher(profile.project, profile.results_topic, profile.commands_topic)
    request_id = str(command["request_id"])
    if ctx.args.no_wait:
        publisher.publish_command(command)
        ctx.print(request_id)
        return EXIT_OK
    with PubSubResultFeed(profile.project, profile.results_topic, request_id) as feed:
        publisher.publish_command(command)
        ctx.say(f"published {body['action']} ({request_id}); following its results")
        result = follow(feed, request_id, ctx.args.timeout, ctx.out)
    if ctx.args.json:
        ctx.print(json.dumps(result.model_dump(mode="json")))
    return exit_code(result)


def results(ctx: Context) -> int:
    """Print results as they arrive: every request's, or one --request-id's until its terminal one."""
    profile = ctx.profile()
    a = ctx.args
    deadline = time.monotonic() + a.timeout if a.timeout else None
    with PubSubResultFeed(profile.project, profile.results_topic, a.request_id) as feed:
        ctx.say(
            f"following {profile.results_topic}"
            + (f" for {a.request_id}" if a.request_id else "")
            + " (Ctrl-C stops)"
        )
        while deadline is None or time.monotonic() < deadline:
            for result in feed.pull(wait_s=5.0):
                ctx.print(
                    json.dumps(result.model_dump(mode="json")) if a.json else format_result(result)
                )
                if a.request_id and result.terminal:
                    return exit_code(result)
            if not a.follow:
                return EXIT_OK
    return EXIT_OK
