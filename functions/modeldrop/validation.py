"""Pure validation of one uploaded version folder: every problem, no cloud calls.

Signature (used by the CLI's `upload` before uploading and by `on_upload` before registering):

    validate_version(
        model: str,                    # models/<model>/...
        version: str,                  # .../<version>/
        files: Mapping[str, int],      # file name in the folder -> size in bytes (the listing)
        config: Mapping | bytes | None,  # config.json, parsed or raw; None when absent
        index: Mapping | bytes | None = None,  # model.safetensors.index.json, parsed or raw
        policy: Policy = Policy(),     # allow_pickle, allow_remote_code, size limits
    ) -> list[str]                     # every problem found, in a stable order; [] means valid

`required_files(files, index)` names what a plain copy (no manifest) must hold before it is
complete: config.json, a tokenizer, and every shard the index names (or one model.safetensors).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any

from modeldrop import jsonlimits
from modeldrop.architectures import VLLM_ARCHITECTURES
from modeldrop.layout import (
    CONFIG_NAME,
    DEPLOY_POLICY_NAME,
    MANIFEST_NAME,
    SHARD_INDEX_NAME,
)
from modeldrop.naming import model_name_problem, version_name_problem

GIB = 1024**3
_FILE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
SAFETENSORS_SUFFIX = ".safetensors"
SINGLE_SHARD_NAME = "model.safetensors"
# Formats that unpickle on load: arbitrary code runs in the serving container.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# Any one of these sets is a tokenizer vLLM (through transformers) can load.
TOKENIZER_SETS: tuple[frozenset[str], ...] = (
    frozenset({"tokenizer.json"}),
    frozenset({"tokenizer.model"}),
    frozenset({"vocab.json", "merges.txt"}),
)
MAX_JSON_BYTES = 64 * 1024 * 1024  # config, index and tokenizer config; shards have their own limit


@dataclass(frozen=True)
class Policy:
    """What an upload may contain beyond the safe default."""

    allow_pickle: bool = False
    allow_remote_code: bool = False
    max_file_bytes: int = 512 * GIB
    max_total_bytes: int = 2048 * GIB


def validate_version(
    model: str,
    version: str,
    files: Mapping[str, int],
    config: Mapping[str, Any] | bytes | None,
    index: Mapping[str, Any] | bytes | None = None,
    policy: Policy = Policy(),
) -> list[str]:
    """Every problem with the folder's contents; an empty list means it may be registered."""
    problems = [p for p in (model_name_problem(model), version_name_problem(version)) if p]
    problems += _name_problems(files)
    problems += _format_problems(files, policy)
    parsed_config, config_problem = _as_json(CONFIG_NAME, config)
    if config_problem:
        problems.append(config_problem)
    elif parsed_config is None:
        problems.append(f"{CONFIG_NAME} is missing")
    else:
        problems += _config_problems(parsed_config, policy)
    if index is not None or SHARD_INDEX_NAME in files:
        parsed_index, index_problem = _as_json(SHARD_INDEX_NAME, index)
        if index_problem:
            problems.append(index_problem)
        elif parsed_index is None:
            problems.append(f"{SHARD_INDEX_NAME} is listed but could not be read")
        else:
            problems += _index_problems(parsed_index, files)
    elif SINGLE_SHARD_NAME not in files:
        pickled = policy.allow_pickle and any(n.lower().endswith(PICKLE_SUFFIXES) for n in files)
        if not pickled:
            problems.append(
                f"no weights: expected {SINGLE_SHARD_NAME}, or {SHARD_INDEX_NAME} with its shards"
            )
    if not any(group <= files.keys() for group in TOKENIZER_SETS):
        problems.append(
            "no tokenizer: expected tokenizer.json, tokenizer.model, or vocab.json with merges.txt"
        )
    problems += _size_problems(files, policy)
    return problems


def early_problems(names: Set[str], policy: Policy = Policy()) -> list[str]:
    """Problems no further file can fix (names, pickle, code): an incomplete folder is refused at once."""
    files = dict.fromkeys(names, 0)
    return _name_problems(files) + _format_problems(files, policy)


def required_files(files: Set[str], index: Mapping[str, Any] | None) -> set[str]:
    """What a plain copy needs before it counts as complete (judged from the names present)."""
    needed = {CONFIG_NAME}
    tokenizer = next((group for group in TOKENIZER_SETS if group <= files), TOKENIZER_SETS[0])
    needed |= tokenizer
    if index is not None:
        needed.add(SHARD_INDEX_NAME)
        needed |= shard_names(index)
    elif SHARD_INDEX_NAME in files:
        needed.add(SHARD_INDEX_NAME)
    else:
        needed.add(SINGLE_SHARD_NAME)
    return needed


def shard_names(index: Mapping[str, Any]) -> set[str]:
    """The shard files an index's weight_map points at (empty when it has none)."""
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, Mapping):
        return set()
    return {str(name) for name in weight_map.values()}


def _as_json(
    name: str, value: Mapping[str, Any] | bytes | None
) -> tuple[dict[str, Any] | None, str | None]:
    if value is None:
        return None, None
    if isinstance(value, bytes):
        if len(value) > MAX_JSON_BYTES:
            return None, f"{name} is {len(value)} bytes; the limit is {MAX_JSON_BYTES}"
        try:
            value = jsonlimits.loads(value, max_bytes=MAX_JSON_BYTES, what=name)
        except jsonlimits.JsonLimitError as error:
            return None, str(error)
    if not isinstance(value, Mapping):
        return None, f"{name} must hold a JSON object"
    return dict(value), None


def _name_problems(files: Mapping[str, int]) -> list[str]:
    return [
        f"file name {name!r} must be 1-200 characters of [A-Za-z0-9._-] (no folders, no '..')"
        for name in sorted(files)
        if not _FILE_NAME.match(name) or name in {".", ".."}
    ]


def _format_problems(files: Mapping[str, int], policy: Policy) -> list[str]:
    problems = []
    if not policy.allow_pickle:
        for name in sorted(files):
            if name.lower().endswith(PICKLE_SUFFIXES):
                problems.append(
                    f"{name} is a pickle format that runs code when loaded: upload safetensors "
                    "(or allow pickle in the bucket policy)"
                )
    if not policy.allow_remote_code:
        for name in sorted(files):
            if name.endswith(".py"):
                problems.append(f"{name} is Python code: remote code is not allowed")
    return problems


def _config_problems(config: Mapping[str, Any], policy: Policy) -> list[str]:
    problems = []
    architectures = config.get("architectures")
    if not isinstance(architectures, list) or not architectures:
        problems.append(f"{CONFIG_NAME} names no architecture (the 'architectures' list)")
    else:
        unknown = [a for a in architectures if a not in VLLM_ARCHITECTURES]
        if len(unknown) == len(architectures):
            problems.append(
                f"{CONFIG_NAME} architecture(s) {', '.join(map(str, unknown))} are not served by vLLM"
            )
    if "auto_map" in config and not policy.allow_remote_code:
        problems.append(
            f"{CONFIG_NAME} has 'auto_map' (custom code loaded with trust_remote_code): "
            "remote code is not allowed"
        )
    return problems


def _index_problems(index: Mapping[str, Any], files: Mapping[str, int]) -> list[str]:
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, Mapping) or not weight_map:
        return [f"{SHARD_INDEX_NAME} has no 'weight_map'"]
    problems = []
    shards = shard_names(index)
    for shard in sorted(shards):
        if not _FILE_NAME.match(shard) or not shard.endswith(SAFETENSORS_SUFFIX):
            problems.append(f"{SHARD_INDEX_NAME} names {shard!r}, not a .safetensors file here")
        elif shard not in files:
            problems.append(f"shard {shard} named by {SHARD_INDEX_NAME} is missing")
    extra = sorted(n for n in files if n.endswith(SAFETENSORS_SUFFIX) and n not in shards)
    for name in extra:
        problems.append(f"{name} is not named by {SHARD_INDEX_NAME}")
    total = (
        index.get("metadata", {}).get("total_size")
        if isinstance(index.get("metadata"), Mapping)
        else None
    )
    present = sum(files[s] for s in shards if s in files)
    if isinstance(total, int) and not any(s not in files for s in shards) and total > present:
        problems.append(
            f"{SHARD_INDEX_NAME} says the weights hold {total} bytes but the shards hold {present}"
        )
    return problems


def _size_problems(files: Mapping[str, int], policy: Policy) -> list[str]:
    problems = []
    for name in sorted(files):
        size = files[name]
        if size < 0:
            problems.append(f"{name} has a negative size")
        elif size == 0 and name.endswith(SAFETENSORS_SUFFIX):
            problems.append(f"{name} is empty")
        elif size > policy.max_file_bytes:
            problems.append(f"{name} is {size} bytes; the limit is {policy.max_file_bytes}")
        elif (
            name.endswith(".json")
            and name not in (MANIFEST_NAME, DEPLOY_POLICY_NAME)
            and size > MAX_JSON_BYTES
        ):
            problems.append(f"{name} is {size} bytes; JSON files are limited to {MAX_JSON_BYTES}")
    total = sum(max(size, 0) for size in files.values())
    if total > policy.max_total_bytes:
        problems.append(f"the version holds {total} bytes; the limit is {policy.max_total_bytes}")
    return problems
