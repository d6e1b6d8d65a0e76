"""LoRA adapters dropped under models/<model>/adapters/<name>/: validated, then recorded for serving.

A running deployment of the model serves a recorded adapter by name, fetching it on first use
(serving/ reads `adapters/<model>/<name>.json` from the state bucket). Only what passes here is
recorded, so nothing unchecked ever reaches a GPU: safetensors only, no code, a LoRA config, a rank
vLLM can serve, and tensor shapes that fit the base model's registered config.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from modeldrop import jsonlimits, labels
from modeldrop.context import Context
from modeldrop.errors import ConflictError, TransientError
from modeldrop.layout import AdapterFolder
from modeldrop.records import RequestState
from modeldrop.reporting import once
from modeldrop.results import Result, Status
from modeldrop.storage import StoredObject
from modeldrop.tensors import check_file

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
# The largest LoRA rank vLLM's engine accepts (its --max-lora-rank choices end at 512).
MAX_RANK = 512
MAX_CONFIG_BYTES = 1024 * 1024
# Pending adapter folders share the uploads/ markers: `adapters.<name>` can't be a version name.
PENDING_PREFIX = "adapters."
_PICKLE = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


INDEX_PREFIX = "adapter-index/"
# /v1/models lists at most this many adapters per endpoint (one index read per ready endpoint).
MAX_LISTED = 256
_INDEX_TRIES = 5


RECORDS_PREFIX = "adapters/"


def record_name(model: str, adapter: str) -> str:
    """Where the state bucket holds a validated adapter's record."""
    return f"{RECORDS_PREFIX}{model}/{adapter}.json"


def index_name(model: str) -> str:
    """The names of a model's registered adapters, in one object: read by the gateway's
    /v1/models, which may read objects it names but not list adapters/."""
    return f"{INDEX_PREFIX}{model}.json"


def index_adapter(ctx: Context, model: str, adapter: str) -> None:
    """Add `adapter` to its model's index (adapters of one model register under different leases:
    a generation precondition keeps two registrations from losing each other)."""
    bucket, name = ctx.settings.state_bucket, index_name(model)
    for _ in range(_INDEX_TRIES):
        current = ctx.storage.read(bucket, name)
        names = _names(current.data) if current is not None else []
        if adapter in names:
            return
        body = json.dumps({"model": model, "adapters": sorted([*names, adapter])}).encode()
        try:
            ctx.storage.write(
                bucket, name, body, if_generation_match=current.generation if current else 0
            )
            return
        except ConflictError:
            continue
    raise TransientError(f"the adapter index of {model} kept changing; retried")


def indexed(ctx: Context, model: str) -> list[str]:
    """A model's registered adapters by name, at most MAX_LISTED."""
    current = ctx.storage.read(ctx.settings.state_bucket, index_name(model))
    return _names(current.data)[:MAX_LISTED] if current is not None else []


def repair_indexes(ctx: Context) -> list[str]:
    """The sweep's part: make each model's index name exactly its recorded adapters; the models
    whose index changed. It lists adapters registered before indexes existed, and drops one whose
    record a person deleted. A write that races a registration is left to the next sweep."""
    bucket = ctx.settings.state_bucket
    recorded: dict[str, set[str]] = {}
    for obj in ctx.storage.list_objects(bucket, RECORDS_PREFIX):
        model, _, file = obj.name[len(RECORDS_PREFIX) :].partition("/")
        if file.endswith(".json") and "/" not in file:
            recorded.setdefault(model, set()).add(file.removesuffix(".json"))
    indexes = {
        o.name[len(INDEX_PREFIX) :].removesuffix(".json")
        for o in ctx.storage.list_objects(bucket, INDEX_PREFIX)
        if o.name.endswith(".json")
    }
    repaired = []
    for model in sorted(recorded.keys() | indexes):
        current = ctx.storage.read(bucket, index_name(model))
        names = sorted(recorded.get(model, set()))
        if current is not None and _names(current.data) == names:
            continue
        body = json.dumps({"model": model, "adapters": names}).encode()
        try:
            ctx.storage.write(
                bucket,
                index_name(model),
                body,
                if_generation_match=current.generation if current else 0,
            )
        except ConflictError:
            continue  # a registration wrote it meanwhile: judged again next sweep
        repaired.append(model)
    return repaired


def _names(data: bytes) -> list[str]:
    try:
        found = json.loads(data).get("adapters", [])
    except (ValueError, AttributeError):
        return []
    return [n for n in found if isinstance(n, str)] if isinstance(found, list) else []


def on_adapter(folder: AdapterFolder, ctx: Context, now: datetime) -> Result | None:
    """Judge an adapter folder once it is complete (or abandoned); None while it may still complete."""
    listing = {
        o.name[len(folder.prefix) :]: o
        for o in ctx.storage.list_objects(folder.bucket, folder.prefix)
        if "/" not in o.name[len(folder.prefix) :]
    }
    pending = PENDING_PREFIX + folder.adapter
    if not listing:
        ctx.state.clear_pending(folder.model, pending)
        return None
    early = _early_problems(listing)
    missing = [name for name in (CONFIG, WEIGHTS) if name not in listing]
    abandoned = _abandoned(listing, ctx, now)
    if missing and not early and not abandoned:
        ctx.state.mark_pending(folder.bucket, folder.model, pending, now)
        return None
    ctx.state.clear_pending(folder.model, pending)
    first = min(o.generation for o in listing.values())
    generations = [listing[n].generation for n in (CONFIG, WEIGHTS) if n in listing]
    rid = _request_id(folder, [first] if (missing or early) else generations)
    prior = ctx.state.request(rid)
    if prior is not None and prior.state is RequestState.DONE:
        return None
    problems = early + [f"{name} is missing" for name in missing]
    if missing and abandoned:
        problems.append(
            f"no file arrived for {ctx.settings.upload_wait_s} s (MODELDROP_UPLOAD_WAIT)"
        )
    record: dict[str, Any] = {}
    if not problems:
        record, problems = _checked(folder, listing, ctx)
    base: dict[str, Any] = {
        "request_id": rid,
        "kind": "upload",
        "action": "adapter",
        "model": folder.model,
        "details": {"adapter": folder.adapter, "uri": folder.uri},
    }
    holder = f"{rid}#{uuid.uuid4().hex[:8]}"
    with ctx.state.lease(f"adapter.{folder.model}.{folder.adapter}", holder, now):
        if problems:
            message = f"adapter {folder.adapter} of {folder.model} can't be served"
            return once(
                ctx, now, Result(status=Status.REJECTED, message=message, reasons=problems, **base)
            )
        record["registered_at"] = now.isoformat()
        ctx.storage.write(
            ctx.settings.state_bucket,
            record_name(folder.model, folder.adapter),
            json.dumps(record).encode(),
        )
        index_adapter(ctx, folder.model, folder.adapter)
        message = f"adapter {folder.adapter} of {folder.model} is served by name on its deployments"
        return once(ctx, now, Result(status=Status.REGISTERED, message=message, **base))


def _checked(
    folder: AdapterFolder, listing: dict[str, StoredObject], ctx: Context
) -> tuple[dict[str, Any], list[str]]:
    found = ctx.storage.read(folder.bucket, folder.prefix + CONFIG)
    raw = b"" if found is None else found.data
    try:
        config = jsonlimits.loads(raw, max_bytes=MAX_CONFIG_BYTES, what=CONFIG)
    except jsonlimits.JsonLimitError as error:
        return {}, [str(error)]
    if not isinstance(config, dict):
        return {}, [f"{CONFIG} must hold a JSON object"]
    problems = []
    if config.get("peft_type") != "LORA":
        problems.append(f"{CONFIG} has peft_type {config.get('peft_type')!r}; only LORA is served")
    rank = config.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or not 1 <= rank <= MAX_RANK:
        problems.append(f"{CONFIG} rank r={rank!r} must be an integer from 1 to {MAX_RANK}")
    weights = listing[WEIGHTS]
    header = check_file(
        WEIGHTS,
        weights.size,
        lambda start, end: ctx.storage.read_range(
            folder.bucket, folder.prefix + WEIGHTS, start, end
        ),
    )
    problems += header.problems
    shapes: dict[str, list[int]] = {}
    if not problems and isinstance(rank, int):
        shapes = header_shapes(folder, ctx, weights.size)
        problems += _base_problems(folder, ctx, shapes, rank)
    files = [
        {"name": name, "size": o.size, "crc32c": o.crc32c}
        for name, o in sorted(listing.items())
        if name.endswith((".json", ".safetensors"))
    ]
    record = {
        "model": folder.model,
        "name": folder.adapter,
        "uri": folder.uri,
        "rank": rank,
        "base_model_name_or_path": config.get("base_model_name_or_path"),
        # What serving checks against a deployment's --lora-target-modules before it downloads.
        "modules": lora_modules(shapes),
        "files": files,
    }
    return record, problems


def lora_modules(shapes: dict[str, list[int]]) -> list[str]:
    """The module names an adapter has LoRA matrices for (`q_proj`, `down_proj`), sorted."""
    return sorted({k.split(".lora_", 1)[0].rsplit(".", 1)[-1] for k in shapes if ".lora_" in k})


def header_shapes(folder: AdapterFolder, ctx: Context, size: int) -> dict[str, list[int]]:
    """Tensor name -> shape, from the (already checked) safetensors header."""
    first = ctx.storage.read_range(folder.bucket, folder.prefix + WEIGHTS, 0, min(size, 8))
    length = int.from_bytes(first[:8], "little")
    raw = ctx.storage.read_range(folder.bucket, folder.prefix + WEIGHTS, 8, 8 + length)
    header = jsonlimits.loads(raw, max_bytes=length + 1, what=WEIGHTS)
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


def _base_problems(
    folder: AdapterFolder, ctx: Context, shapes: dict[str, list[int]], rank: int
) -> list[str]:
    """The adapter's matrices must fit the newest registered version of its model."""
    version = ctx.vertex.model_version(folder.model, "latest")
    if version is None:
        return [
            f"model {folder.model} has no registered version to adapt: upload its weights first"
        ]
    base_folder = version.labels.get(labels.VERSION, "")
    found = ctx.storage.read(folder.bucket, f"models/{folder.model}/{base_folder}/config.json")
    try:
        base = jsonlimits.loads(found.data if found else b"", max_bytes=MAX_CONFIG_BYTES)
    except jsonlimits.JsonLimitError:
        return [
            f"the config.json of {folder.model}/{base_folder} can't be read to check the adapter"
        ]
    widths = _widths(base)
    problems = []
    for name, shape in sorted(shapes.items()):
        if len(shape) != 2:
            problems.append(f"{name} has shape {shape}; LoRA matrices are 2-D")
        elif "lora_A" in name and (shape[0] != rank or (widths and shape[1] not in widths)):
            problems.append(f"{name} is {shape}: expected [{rank}, a width of {folder.model}]")
        elif "lora_B" in name and (shape[1] != rank or (widths and shape[0] not in widths)):
            problems.append(f"{name} is {shape}: expected [a width of {folder.model}, {rank}]")
    if not any("lora_" in name for name in shapes):
        problems.append(f"{WEIGHTS} holds no lora_A/lora_B matrices")
    return problems[:10]


def _widths(config: Any) -> set[int]:
    """The layer widths a LoRA matrix of this base model may have (empty: can't tell)."""
    if not isinstance(config, dict):
        return set()
    nested = config.get("text_config")
    text: dict[str, Any] = nested if isinstance(nested, dict) else config
    ints = {k: v for k, v in text.items() if isinstance(v, int) and not isinstance(v, bool)}
    hidden, heads = ints.get("hidden_size"), ints.get("num_attention_heads")
    if not hidden or not heads:
        return set()
    head_dim = ints.get("head_dim", hidden // heads)
    kv_heads = ints.get("num_key_value_heads", heads)
    return {hidden, ints.get("intermediate_size", hidden), heads * head_dim, kv_heads * head_dim}


def _early_problems(listing: dict[str, StoredObject]) -> list[str]:
    problems = []
    for name in sorted(listing):
        if name.lower().endswith(_PICKLE):
            problems.append(
                f"{name} is a pickle format that runs code when loaded: use safetensors"
            )
        elif name.endswith(".py"):
            problems.append(f"{name} is Python code: adapters may not carry code")
    return problems


def _abandoned(listing: dict[str, StoredObject], ctx: Context, now: datetime) -> bool:
    times = [o.updated for o in listing.values() if o.updated is not None]
    return bool(times) and now - max(times) > timedelta(seconds=ctx.settings.upload_wait_s)


def _request_id(folder: AdapterFolder, generations: list[int]) -> str:
    digest = hashlib.sha256(
        f"{folder.uri}@{','.join(map(str, sorted(generations)))}".encode()
    ).hexdigest()[:16]
    return f"adapter-{folder.model}-{folder.adapter}-{digest}"[:128]
