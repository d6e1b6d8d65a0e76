"""The weights bucket layout: models/<model>/<version>/<file>, names Vertex accepts, no path tricks.

What may live under `models/`:
- `models/<model>/<version>/<file>`: a version folder (weights, config, tokenizer, manifest);
- `models/<model>/adapters/<adapter>/<file>`: a LoRA adapter of the model;
- `models/modeldrop-deploy.json` and `models/<model>/modeldrop-deploy.json`: deploy policies.
Anything else under `models/` is a mistake the uploader should hear about (a folder copied one
level too deep, a name Vertex refuses); objects outside `models/` are not modeldrop's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modeldrop.naming import (
    ADAPTERS_FOLDER,
    label_safe_problem,
    model_name_problem,
    version_name_problem,
)

MODELS_PREFIX = "models/"
# Written last by the CLI: every file of the version with its size and crc32c.
MANIFEST_NAME = "modeldrop-manifest.json"
# Optional, in a version folder (or at models/<model>/): a deploy command to publish once registered.
DEPLOY_POLICY_NAME = "modeldrop-deploy.json"
# Custom metadata the CLI sets on every file it uploads (value: its request_id): a folder holding such
# a file waits for the CLI's manifest instead of registering as a plain copy once the weights land.
UPLOAD_METADATA_KEY = "modeldrop-request-id"
CONFIG_NAME = "config.json"
SHARD_INDEX_NAME = "model.safetensors.index.json"

_FILE_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}")


def file_name_problem(name: str) -> str | None:
    if _FILE_NAME.fullmatch(name) and name not in {".", ".."}:
        return None
    return f"file name {name!r} must be 1-200 characters of [A-Za-z0-9._-] (no folders, no '..')"


@dataclass(frozen=True)
class VersionFolder:
    """One uploaded version of a model: gs://<bucket>/models/<model>/<version>/."""

    bucket: str
    model: str
    version: str

    @property
    def prefix(self) -> str:
        return f"{MODELS_PREFIX}{self.model}/{self.version}/"

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}"

    def object_name(self, file_name: str) -> str:
        return self.prefix + file_name


@dataclass(frozen=True)
class AdapterFolder:
    """One LoRA adapter of a model: gs://<bucket>/models/<model>/adapters/<adapter>/."""

    bucket: str
    model: str
    adapter: str

    @property
    def prefix(self) -> str:
        return f"{MODELS_PREFIX}{self.model}/{ADAPTERS_FOLDER}/{self.adapter}/"

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class WeightsObject:
    """An object inside a version folder, as named by a storage event."""

    folder: VersionFolder
    file_name: str


@dataclass(frozen=True)
class AdapterObject:
    """An object inside an adapter folder."""

    folder: AdapterFolder
    file_name: str


@dataclass(frozen=True)
class MisplacedObject:
    """An object under models/ that is not part of the layout: its folder and what is wrong."""

    bucket: str
    folder: str  # the object's folder (its name up to the last '/'), the unit that is reported
    problems: tuple[str, ...]


@dataclass(frozen=True)
class OtherObject:
    """Not modeldrop's (outside models/), or a deploy policy: no upload of its own."""

    name: str


ObjectPath = WeightsObject | AdapterObject | MisplacedObject | OtherObject


def classify(bucket: str, name: str) -> ObjectPath:
    """What an object name is in the layout (never raises)."""
    if not name.startswith(MODELS_PREFIX):
        return OtherObject(name)
    parts = name[len(MODELS_PREFIX) :].split("/")
    if parts[-1] == DEPLOY_POLICY_NAME and len(parts) <= 2:
        return OtherObject(name)
    folder = name.rsplit("/", 1)[0]
    if len(parts) == 4 and parts[1] == ADAPTERS_FOLDER:
        model, _, adapter, file_name = parts
        problems = _problems(
            model_name_problem(model),
            label_safe_problem("adapter", adapter),
            file_name_problem(file_name),
        )
        if problems:
            return MisplacedObject(bucket, folder, problems)
        return AdapterObject(AdapterFolder(bucket, model, adapter), file_name)
    if len(parts) != 3:
        return MisplacedObject(
            bucket,
            folder,
            (
                f"object {name!r} is not at {MODELS_PREFIX}<model>/<version>/<file>: version "
                "folders hold files only (a folder copied one level too deep?)",
            ),
        )
    model, version, file_name = parts
    problems = _problems(
        model_name_problem(model), version_name_problem(version), file_name_problem(file_name)
    )
    if problems:
        return MisplacedObject(bucket, folder, problems)
    return WeightsObject(VersionFolder(bucket, model, version), file_name)


def parse_object_name(bucket: str, name: str) -> WeightsObject:
    """Split `models/<model>/<version>/<file>`; ValueError names what is wrong with the path."""
    parsed = classify(bucket, name)
    if isinstance(parsed, WeightsObject):
        return parsed
    if isinstance(parsed, MisplacedObject):
        raise ValueError("; ".join(parsed.problems))
    raise ValueError(f"object {name!r} is not in a version folder under {MODELS_PREFIX!r}")


def parse_folder_uri(uri: str) -> VersionFolder:
    """`gs://<bucket>/models/<model>/<version>/` (trailing slash optional) as a VersionFolder."""
    if not uri.startswith("gs://"):
        raise ValueError(f"{uri!r} is not a gs:// URI")
    bucket, _, path = uri[len("gs://") :].partition("/")
    parsed = parse_object_name(bucket, path.rstrip("/") + "/placeholder")
    return parsed.folder


def _problems(*found: str | None) -> tuple[str, ...]:
    return tuple(p for p in found if p)
