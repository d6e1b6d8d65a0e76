"""Registering a validated version folder in the Model Registry exactly once, under the folder's lock."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime
from typing import Any

from modeldrop import jsonlimits, labels
from modeldrop.commands import parse_command
from modeldrop.context import Context
from modeldrop.errors import PermanentError, TransientError
from modeldrop.layout import DEPLOY_POLICY_NAME, MODELS_PREFIX, VersionFolder
from modeldrop.naming import version_alias
from modeldrop.records import RequestRecord, RequestState
from modeldrop.registry import LATEST_ALIAS, UPLOAD_LABEL, model_spec
from modeldrop.reporting import finish
from modeldrop.results import Result, Status

log = logging.getLogger(__name__)
REGISTER_WAIT_S = 60.0
# Model upload is a long-running operation; polled with backoff, not in a tight loop.
POLL_FIRST_S, POLL_MAX_S = 0.5, 5.0
MAX_POLICY_BYTES = 64 * 1024


def folder_lock(folder: VersionFolder) -> str:
    """The lease name that serializes every invocation acting on one version folder."""
    return f"register.{folder.model}.{folder.version}"


def register_once(
    folder: VersionFolder,
    ctx: Context,
    now: datetime,
    rid: str,
    digest: str,
    kind: dict[str, Any],
) -> Result | None:
    """Register the folder under request `rid` unless that request already has its result."""
    base: dict[str, Any] = {"request_id": rid, **kind}
    record = RequestRecord(
        request_id=rid, kind=kind["kind"], action=kind["action"], state=RequestState.STARTED, at=now
    )
    prior = ctx.state.claim(record)
    if prior is not None and prior.state is RequestState.DONE:
        return None  # a duplicate event: the terminal result is already out
    # A folder's files notify at once, and each notification may come twice: without a lock held
    # by this invocation alone, two of them both find no version and both register one. A lost
    # race raises ConflictError (retried); the retry finds the request done.
    holder = f"{rid}#{uuid.uuid4().hex[:8]}"
    with ctx.state.lease(folder_lock(folder), holder, now):
        return _register_locked(folder, ctx, now, record, digest, base)


def _register_locked(
    folder: VersionFolder,
    ctx: Context,
    now: datetime,
    record: RequestRecord,
    digest: str,
    base: dict[str, Any],
) -> Result | None:
    prior = ctx.state.request(record.request_id)
    if prior is not None and prior.state is RequestState.DONE:
        return None  # the invocation that held the lease before us finished it
    operation = prior.operation if prior is not None else None
    rid = record.request_id
    alias = version_alias(folder.version)
    try:
        if operation is None:
            existing = ctx.vertex.model_version(folder.model, alias)
            if existing is not None:
                found = _already_registered(
                    folder, existing.labels, digest, base, existing.version_id
                )
                return finish(ctx, record, found)
            operation = ctx.vertex.register(model_spec(folder, ctx.settings, digest))
            record = record.model_copy(update={"operation": operation})
            ctx.state.advance_request(record, operation=operation)
        version = _wait_registered(ctx, operation)
    except PermanentError as error:
        # Vertex refused the upload (a rule modeldrop does not check itself): the uploader hears
        # Vertex's own reason, once, instead of a silent log line.
        refused = Result(
            status=Status.REJECTED,
            message="Vertex AI refused the version",
            reasons=error.reasons,
            operation=operation,
            **base,
        )
        return finish(ctx, record, refused)
    details: dict[str, Any] = {
        "model_resource": version.resource,
        "version_id": version.version_id,
        "aliases": [alias, LATEST_ALIAS],
        "uri": folder.uri,
    }
    details.update(_publish_deploy_policy(folder, ctx, rid))
    result = Result(
        status=Status.REGISTERED,
        message=f"{folder.uri} is {folder.model}@{alias}",
        operation=operation,
        details=details,
        **base,
    )
    return finish(ctx, record, result)


def _already_registered(
    folder: VersionFolder, found: dict[str, str], digest: str, base: dict[str, Any], version_id: str
) -> Result:
    alias = version_alias(folder.version)
    if found.get(labels.VERSION) != folder.version:
        reason = f"alias {alias!r} already names folder {found.get(labels.VERSION)!r} of {folder.model}; rename the folder"
        return Result(
            status=Status.REJECTED, message="version alias taken", reasons=[reason], **base
        )
    if found.get(UPLOAD_LABEL) != digest:
        # The registered version's artifact URI is this folder: its deployments would now load
        # other weights than were validated. A person should hear of it, beyond the result.
        log.error(
            "%s was overwritten after it was registered as %s@%s: the registered version no longer "
            "matches its files",
            folder.uri,
            folder.model,
            alias,
        )
        reason = (
            f"{folder.uri} was registered with other files: its objects were overwritten after "
            "registration, so the registered version no longer matches the bucket; versions are "
            "immutable, upload to a new folder"
        )
        return Result(
            status=Status.REJECTED, message="version already registered", reasons=[reason], **base
        )
    return Result(
        status=Status.REGISTERED,
        message=f"{folder.uri} is {folder.model}@{alias}",
        details={"version_id": version_id, "already_registered": True, "uri": folder.uri},
        **base,
    )


def _wait_registered(ctx: Context, operation: str) -> Any:
    deadline = time.monotonic() + REGISTER_WAIT_S
    pause = POLL_FIRST_S
    while True:
        try:
            return ctx.vertex.finish_register(operation)
        except TransientError:
            if time.monotonic() + pause > deadline:
                raise  # redelivered: the recorded operation is polled again, never started twice
            time.sleep(pause)
            pause = min(pause * 2, POLL_MAX_S)


def _publish_deploy_policy(folder: VersionFolder, ctx: Context, rid: str) -> dict[str, Any]:
    """Publish the folder's (else the model's, else the bucket's) deploy policy as a deploy command."""
    for name in (folder.prefix, f"{MODELS_PREFIX}{folder.model}/", MODELS_PREFIX):
        found = ctx.storage.read(folder.bucket, name + DEPLOY_POLICY_NAME)
        if found is not None:
            break
    else:
        return {}
    deploy_id = f"{rid}-deploy"[-128:].lstrip("-._:")
    try:
        policy = jsonlimits.loads(found.data, max_bytes=MAX_POLICY_BYTES, what=DEPLOY_POLICY_NAME)
        if not isinstance(policy, dict):
            raise PermanentError(f"{DEPLOY_POLICY_NAME} must hold a JSON object")
        command = {
            **policy,
            "action": "deploy",
            "request_id": deploy_id,
            "model": folder.model,
            "version": folder.version,
        }
        parse_command(command)
    except jsonlimits.JsonLimitError as error:
        return {"deploy_policy_problems": [str(error)]}
    except PermanentError as error:
        return {"deploy_policy_problems": error.reasons}
    ctx.publisher.publish_command(command)
    return {"deploy_request_id": deploy_id}
