"""on_upload's logic: judge a version folder (complete, valid, abandoned), and register it once.

Every folder under models/ ends in exactly one terminal result: `registered`, or `rejected` with
every reason. A folder that is not complete yet is noted in the state bucket; the sweep judges it
again, and a folder that gets no new file for the upload wait is rejected naming what is missing.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from modeldrop import adapters, jsonlimits
from modeldrop.context import Context
from modeldrop.errors import PermanentError, TransientError
from modeldrop.events import StorageObject
from modeldrop.layout import (
    CONFIG_NAME,
    DEPLOY_POLICY_NAME,
    MANIFEST_NAME,
    SHARD_INDEX_NAME,
    UPLOAD_METADATA_KEY,
    AdapterFolder,
    AdapterObject,
    MisplacedObject,
    VersionFolder,
    WeightsObject,
    classify,
)
from modeldrop.manifest import parse_manifest
from modeldrop.records import RequestState
from modeldrop.registration import folder_lock, register_once
from modeldrop.registry import content_digest
from modeldrop.reporting import once
from modeldrop.results import Result, Status, upload_request_id
from modeldrop.storage import StoredObject
from modeldrop.tensors import weights_problems
from modeldrop.validation import (
    MAX_JSON_BYTES,
    early_problems,
    required_files,
    validate_version,
)

_NOT_CONTENT = {MANIFEST_NAME, DEPLOY_POLICY_NAME}
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class _Waiting:
    """The folder is incomplete and may still complete: no result yet."""


WAITING = _Waiting()


def on_object(obj: StorageObject, ctx: Context, now: datetime) -> Result | None:
    """The result of a finalized object's folder, or None while it is incomplete or already done."""
    path = classify(obj.bucket, obj.name)
    if isinstance(path, WeightsObject):
        return register(path.folder, ctx, now)
    if isinstance(path, AdapterObject):
        return adapters.on_adapter(path.folder, ctx, now)
    if isinstance(path, MisplacedObject):
        return _reject_misplaced(path, ctx, now)
    return None  # not modeldrop's, or a deploy policy (read when its folder registers)


def register(
    folder: VersionFolder, ctx: Context, now: datetime, request_id: str | None = None
) -> Result | None:
    """Register `folder` if complete; `request_id` (a register command) makes incompleteness an error."""
    verdict = _judge(folder, ctx, now, request_id)
    if isinstance(verdict, _Waiting):
        ctx.state.mark_pending(folder.bucket, folder.model, folder.version, now)
        return None
    if request_id is None:
        ctx.state.clear_pending(folder.model, folder.version)
    return verdict


def judge_pending(ctx: Context, now: datetime) -> tuple[list[Result], list[str]]:
    """The sweep's part: judge every folder noted as incomplete again; (results, problems)."""
    results, problems = [], []
    for bucket, model, version in ctx.state.pending_uploads():
        adapter = version.removeprefix(adapters.PENDING_PREFIX)
        try:
            if adapter != version:
                result = adapters.on_adapter(AdapterFolder(bucket, model, adapter), ctx, now)
            else:
                result = register(VersionFolder(bucket, model, version), ctx, now)
        except TransientError as error:
            problems.append(f"{model}/{version}: {error} (judged again next sweep)")
            continue
        if result is not None:
            results.append(result)
    return results, problems


def _judge(
    folder: VersionFolder, ctx: Context, now: datetime, request_id: str | None
) -> Result | _Waiting | None:
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
    if not listing and not explicit:
        return None  # the folder was deleted: nothing left to judge
    index = _read_json(ctx, folder, listing, SHARD_INDEX_NAME)
    needed = required_files(listing.keys(), index if isinstance(index, dict) else None)
    missing = sorted(needed - listing.keys())
    abandoned = _abandoned(listing, ctx, now)
    rid = request_id
    if MANIFEST_NAME in listing:
        manifest_obj = listing[MANIFEST_NAME]
        try:
            if manifest_obj.size > MAX_MANIFEST_BYTES:
                raise PermanentError(
                    f"{MANIFEST_NAME} is {manifest_obj.size} bytes; the limit is {MAX_MANIFEST_BYTES}"
                )
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
        if absent and not explicit and not abandoned:
            return WAITING  # the manifest came before its files (a plain recursive copy)
        problems = _manifest_problems(
            folder, manifest.model, manifest.version, manifest.files, listing
        )
        problems += [f"{name} is in the manifest but not in the bucket" for name in absent]
        if absent and abandoned:
            problems.append(_waited(ctx))
        if problems:
            return _reject(
                folder, ctx, now, base, rid, "the files differ from the manifest", problems
            )
    elif not explicit and any(o.metadata.get(UPLOAD_METADATA_KEY) for o in listing.values()):
        if not abandoned:
            return WAITING  # the CLI is uploading: its manifest, written last, completes it
        rid = _first_file_id(folder, listing.values())
        reason = (
            f"the upload stopped before its {MANIFEST_NAME} arrived (the CLI writes it last); "
            "run the same `modeldrop upload` again to resume it"
        )
        return _reject(folder, ctx, now, base, rid, "the upload did not finish", [reason])
    elif missing:
        early = early_problems(listing.keys(), ctx.policy)
        if early and not explicit:
            # Refused whatever arrives next: say so now rather than after the wait.
            rid = _first_file_id(folder, listing.values())
            early += [f"{name} is missing" for name in missing]
            return _reject(folder, ctx, now, base, rid, f"{folder.uri} can't be registered", early)
        if not explicit and not abandoned:
            return WAITING
        rid = rid or upload_request_id(
            folder.bucket, folder.model, folder.version, [o.generation for o in listing.values()]
        )
        reasons = [f"{name} is missing" for name in missing]
        if not explicit:
            reasons.append(_waited(ctx))
        return _reject(folder, ctx, now, base, rid, "the folder is incomplete", reasons)
    rid = rid or upload_request_id(
        folder.bucket, folder.model, folder.version, [listing[n].generation for n in needed]
    )
    prior = ctx.state.request(rid)
    if prior is not None and prior.state is RequestState.DONE:
        return None  # a duplicate event: judged already (skip re-reading the headers)
    sizes = {name: obj.size for name, obj in listing.items() if name not in _NOT_CONTENT}
    config = _read(ctx, folder, CONFIG_NAME) if CONFIG_NAME in listing else None
    problems = validate_version(folder.model, folder.version, sizes, config, index, ctx.policy)
    if not problems:
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        problems = weights_problems(
            sizes,
            weight_map if isinstance(weight_map, dict) else None,
            lambda name, start, end: ctx.storage.read_range(
                folder.bucket, folder.object_name(name), start, end
            ),
        )
    if problems:
        return _reject(folder, ctx, now, base, rid, f"{folder.uri} can't be registered", problems)
    digest = content_digest(listing[name].generation for name in needed if name in listing)
    return register_once(folder, ctx, now, rid, digest, base)


def _abandoned(listing: dict[str, StoredObject], ctx: Context, now: datetime) -> bool:
    """Whether the folder's newest object is older than the upload wait (no upload is still going)."""
    times = [o.updated for o in listing.values() if o.updated is not None]
    if not times:
        return False
    return now - max(times) > timedelta(seconds=ctx.settings.upload_wait_s)


def _waited(ctx: Context) -> str:
    return (
        f"no file arrived for {ctx.settings.upload_wait_s} s (MODELDROP_UPLOAD_WAIT): "
        "the upload is treated as abandoned; copy the missing files to complete it"
    )


def _first_file_id(folder: VersionFolder, objects: Any) -> str:
    """A request id for this attempt at the folder: the oldest file's generation stays the same
    while more files arrive, so every event of one copy names one request."""
    first = min(o.generation for o in objects)
    return upload_request_id(folder.bucket, folder.model, folder.version, [first])


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
    return _once_locked(ctx, now, folder_lock(folder), result)


def _reject_misplaced(path: MisplacedObject, ctx: Context, now: datetime) -> Result | None:
    """One rejection per misplaced folder, however many of its objects notify."""
    digest = hashlib.sha256(f"{path.bucket}/{path.folder}".encode()).hexdigest()[:16]
    result = Result(
        request_id=f"upload-invalid-{digest}",
        kind="upload",
        action="upload",
        status=Status.REJECTED,
        message=f"gs://{path.bucket}/{path.folder}/ is not a place modeldrop registers from",
        reasons=list(path.problems),
        details={"folder": f"gs://{path.bucket}/{path.folder}/"},
    )
    return _once_locked(ctx, now, f"misplaced.{digest}", result)


def _once_locked(ctx: Context, now: datetime, lock: str, result: Result) -> Result | None:
    holder = f"{result.request_id}#{uuid.uuid4().hex[:8]}"
    with ctx.state.lease(lock, holder, now):
        prior = ctx.state.request(result.request_id)
        if prior is not None and prior.state is RequestState.DONE:
            return None
        return once(ctx, now, result)


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
    if listing[name].size > MAX_JSON_BYTES:
        return b""  # validation reports the size from the listing; never read it
    raw = _read(ctx, folder, name)
    try:
        return jsonlimits.loads(raw, max_bytes=MAX_JSON_BYTES, what=name)
    except jsonlimits.JsonLimitError:
        return raw  # validation reports it, with the parser's message
