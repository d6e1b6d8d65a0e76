"""The weights bucket layout: models/<model>/<version>/<file>, names label-safe, no path tricks."""

from __future__ import annotations

import re
from dataclasses import dataclass

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

# Vertex label values and our resource ids share this alphabet; it also rules out path tricks.
_LABEL_SAFE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


def is_label_safe(name: str) -> bool:
    """True for 1-63 characters of [a-z0-9-], starting and ending with a letter or digit."""
    return bool(_LABEL_SAFE.match(name))


def label_safe_problem(kind: str, name: str) -> str | None:
    """Why `name` can't be a model or version name, or None when it can."""
    if is_label_safe(name):
        return None
    return (
        f"{kind} name {name!r} is not label-safe: use 1-63 characters of a-z, 0-9 and '-', "
        "starting and ending with a letter or digit"
    )


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
class WeightsObject:
    """An object inside a version folder, as named by a storage event."""

    folder: VersionFolder
    file_name: str


def parse_object_name(bucket: str, name: str) -> WeightsObject:
    """Split `models/<model>/<version>/<file>`; ValueError names what is wrong with the path."""
    if not name.startswith(MODELS_PREFIX):
        raise ValueError(f"object {name!r} is outside {MODELS_PREFIX!r}")
    parts = name[len(MODELS_PREFIX) :].split("/")
    if len(parts) != 3:
        raise ValueError(
            f"object {name!r} is not at {MODELS_PREFIX}<model>/<version>/<file> "
            "(nested folders are not part of the layout)"
        )
    model, version, file_name = parts
    problems = [
        p for p in (label_safe_problem("model", model), label_safe_problem("version", version)) if p
    ]
    if not _FILE_NAME.match(file_name) or file_name in {".", ".."}:
        problems.append(f"file name {file_name!r} must be 1-200 characters of [A-Za-z0-9._-]")
    if problems:
        raise ValueError("; ".join(problems))
    return WeightsObject(VersionFolder(bucket, model, version), file_name)


def parse_folder_uri(uri: str) -> VersionFolder:
    """`gs://<bucket>/models/<model>/<version>/` (trailing slash optional) as a VersionFolder."""
    if not uri.startswith("gs://"):
        raise ValueError(f"{uri!r} is not a gs:// URI")
    bucket, _, path = uri[len("gs://") :].partition("/")
    parsed = parse_object_name(bucket, path.rstrip("/") + "/placeholder")
    return parsed.folder
