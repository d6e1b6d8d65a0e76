"""on_upload's logic: decide whether a version folder is complete, validate it, register it once."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from typing import Any

from modeldrop import labels
from modeldrop.commands import parse_command
from modeldrop.context import Context
from modeldrop.errors import PermanentError, TransientError
from modeldrop.events import StorageObject
from modeldrop.layout import (
    CONFIG_NAME,
    DEPLOY_POLICY_NAME,
    MANIFEST_NAME,
    MODELS_PREFIX,
    SHARD_INDEX_NAME,
    UPLOAD_METADATA_KEY,
    VersionFolder,
    parse_object_name,
)
from modeldrop.manifest import parse_manifest
from modeldrop.naming import version_alias
from modeldrop.registry import LATEST_ALIAS, UPLOAD_LABEL, content_digest, model_spec
from modeldrop.reporting import finish, once
from modeldrop.results import Result, Status, upload_request_id
from modeldrop.state import RequestRecord, RequestState
from modeldrop.storage import StoredObject
from modeldrop.validation import required_files, validate_version

REGISTER_WAIT_S = 60.0
_NOT_CONTENT = {MANIFEST_NAME, DEPLOY_POLICY_NAME}


def on_object(obj: StorageObject, ctx: Context, now: datetime) -> Result | None:
    """The result of a finalized object's folder, or None while it is incomplete or already done."""
    try:
        parsed = parse_object_name(obj.bucket, obj.name)
    except ValueError as error:
        if obj.name.startswith(MODELS_PREFIX) and obj.name.endswith("/" + MANIFEST_NAME):
            # A manifest was meant as an upload: say why it can't be one rather than stay silent.
            rid = upload_request_id(obj.bucket, "invalid", "path", [obj.generation])
            return once(
                ctx,
                now,
                Result(
                    request_id=rid,
                    kind="upload",
                    action="upload",
                    status=Status.REJECTED,
                    message="the upload's path is outside the layout",
                    reasons=[str(error)],
                ),
            )
        return None
    return register(parsed.folder, ctx, now)


def register(
    folder: VersionFolder, ctx: Context, now: datetime, request_id: str | None = None
) -> Result | None:
    """Register `folder` if complete; `request_id` (a register command) makes incompleteness an error."""
    listing = {
        o.name[len(folder.prefix) :]: o
        for o in ctx.storage.list_objects(folder.bucket, folder.prefix)
        if "/" not in o.name[len(folder.prefix) :]
    }
    explicit = request_id is not None
    base: dict[str, Any] = {
        "kind": "command" if explicit else "upload",
        "action": "register" if explicit else "upload",
        "model": folder.model,
        "version": folder.version,
    }
    index = _read_json(ctx, folder, listing, SHARD_INDEX_NAME)
    needed = required_files(listing.keys(), index if isinstance(index, dict) else None)
    missing = sorted(needed - listing.keys())
    digest = content_digest(listing[name].generation for name in needed if name in listing)
    rid = request_id
    if MANIFEST_NAME in listing:
        manifest_obj = listing[MANIFEST_NAME]
        try:
            manifest = parse_manifest(_read(ctx, folder, MANIFEST_NAME))
        except PermanentError as error:
            rid = rid or upload_request_id(
                folder.bucket, folder.model, folder.version, [manifest_obj.generation]
            )
            return _reject(folder, ctx, now, base, rid, str(error), error.reasons)
        rid = (
            rid
            or manifest.request_id
            or upload_request_id(
                folder.bucket,
                folder.model,
                folder.version,
                [listing[f.name].generation for f in manifest.files if f.name in listing]
                + [manifest_obj.generation],
            )
        )
        absent = [f.name for f in manifest.files if f.name not in listing]
        if absent and not explicit:
            return (
                None  # the manifest came before its files (a plain recursive copy): wait for them
            )
        problems = _manifest_problems(
            folder, manifest.model, manifest.version, manifest.files, listing
        )
        problems += [f"{name} is in the manifest but not in the bucket" for name in absent]
        if problems:
            return _reject(
                folder, ctx, now, base, rid, "the files differ from the manifest", problems
            )
    elif not explicit and any(o.metadata.get(UPLOAD_METADATA_KEY) for o in listing.values()):
        return None  # the CLI is uploading: its manifest, written last, completes the upload
    elif missing:
        if not explicit:
            return None
        return _reject(
            folder,
            ctx,
            now,
            base,
            rid or "",
            "the folder is incomplete",
            [f"{name} is missing" for name in missing],
        )
    rid = rid or upload_request_id(
        folder.bucket, folder.model, folder.version, [listing[n].generation for n in needed]
    )
    sizes = {name: obj.size for name, obj in listing.items() if name not in _NOT_CONTENT}
    config = _read(ctx, folder, CONFIG_NAME) if CONFIG_NAME in listing else None
    problems = validate_version(folder.model, folder.version, sizes, config, index, ctx.policy)
    if problems:
        return _reject(folder, ctx, now, base, rid, f"{folder.uri} can't be registered", problems)
    return _register_once(folder, ctx, now, rid, digest, base)


def _register_once(
    folder: VersionFolder,
    ctx: Context,
    now: datetime,
    rid: str,
    digest: str,
    kind: dict[str, Any],
) -> Result | None:
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
    with ctx.state.lease(_folder_lock(folder), holder, now):
        return _register_locked(folder, ctx, now, record, digest, base)


def _reject(
    folder: VersionFolder,
    ctx: Context,
    now: datetime,
    base: dict[str, Any],
    request_id: str,
    message: str,
    reasons: list[str],
) -> Result | None:
    """Publish a rejection once, under the folder's lock: a folder's events arrive together."""
    result = Result(
        request_id=request_id, status=Status.REJECTED, message=message, reasons=reasons, **base
    )
    holder = f"{result.request_id}#{uuid.uuid4().hex[:8]}"
    with ctx.state.lease(_folder_lock(folder), holder, now):
        prior = ctx.state.request(result.request_id)
        if prior is not None and prior.state is RequestState.DONE:
            return None
        return once(ctx, now, result)


def _folder_lock(folder: VersionFolder) -> str:
    return f"register.{folder.model}.{folder.version}"


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
    if operation is None:
        existing = ctx.vertex.model_version(folder.model, alias)
        if existing is not None:
            result = _already_registered(folder, existing.labels, digest, base, existing.version_id)
            return finish(ctx, record, result)
        operation = ctx.vertex.register(model_spec(folder, ctx.settings, digest))
        record = record.model_copy(update={"operation": operation})
        ctx.state.update_request(record)
    version = _wait_registered(ctx, operation)
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
        reason = f"{folder.uri} was registered with other files; versions are immutable, upload to a new folder"
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
    while True:
        try:
            return ctx.vertex.finish_register(operation)
        except TransientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


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
        policy = json.loads(found.data)
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
    except ValueError as error:
        return {"deploy_policy_problems": [f"{DEPLOY_POLICY_NAME} is not valid JSON: {error}"]}
    except PermanentError as error:
        return {"deploy_policy_problems": error.reasons}
    ctx.publisher.publish_command(command)
    return {"deploy_request_id": deploy_id}


def _manifest_problems(
    folder: VersionFolder, model: str, version: str, files: Any, listing: dict[str, StoredObject]
) -> list[str]:
    problems = []
    if (model, version) != (folder.model, folder.version):
        problems.append(
            f"the manifest is for {model}/{version}, not {folder.model}/{folder.version}"
        )
    for entry in files:
        obj = listing.get(entry.name)
        if obj is None:
            continue
        if obj.size != entry.size:
            problems.append(f"{entry.name} is {obj.size} bytes; the manifest says {entry.size}")
        elif obj.crc32c and obj.crc32c != entry.crc32c:
            problems.append(
                f"{entry.name} has crc32c {obj.crc32c}; the manifest says {entry.crc32c}"
            )
    return problems


def _read(ctx: Context, folder: VersionFolder, name: str) -> bytes:
    found = ctx.storage.read(folder.bucket, folder.object_name(name))
    if found is None:
        raise TransientError(f"{folder.object_name(name)} was listed but can't be read yet")
    return found.data


def _read_json(
    ctx: Context, folder: VersionFolder, listing: dict[str, StoredObject], name: str
) -> Any:
    if name not in listing:
        return None
    raw = _read(ctx, folder, name)
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # validation reports it, with the parser's message
