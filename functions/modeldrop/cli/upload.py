"""`modeldrop upload DIR --model NAME`: check the folder, upload in parallel (resuming), write the manifest last."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from modeldrop.cli.progress import ProgressBar, human_bytes
from modeldrop.cli.transfer import Transfer, file_crc32c
from modeldrop.errors import PermanentError
from modeldrop.layout import (
    CONFIG_NAME,
    MANIFEST_NAME,
    SHARD_INDEX_NAME,
    UPLOAD_METADATA_KEY,
    VersionFolder,
)
from modeldrop.manifest import Manifest, ManifestFile
from modeldrop.tensors import weights_problems
from modeldrop.validation import Policy, validate_version


@dataclass(frozen=True)
class LocalFile:
    name: str
    path: Path
    size: int


@dataclass(frozen=True)
class UploadPlan:
    """What will be uploaded where; `skipped` were already in the bucket with the same crc32c."""

    folder: VersionFolder
    files: list[LocalFile]
    crc32c: dict[str, str]
    to_upload: list[LocalFile]
    skipped: list[str]
    complete: bool  # the manifest is already there: nothing to do
    # The generation each upload may replace (0: the object must not exist yet), so two uploaders
    # racing on one folder can't overwrite each other's files unseen.
    generations: dict[str, int] = field(default_factory=dict)

    @property
    def manifest_name(self) -> str:
        return self.folder.object_name(MANIFEST_NAME)


def scan(directory: Path) -> tuple[list[LocalFile], list[str]]:
    """The folder's files (flat, as the layout is) and notes on what was left out."""
    if not directory.is_dir():
        raise PermanentError(f"{directory} is not a folder")
    files, notes = [], []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith("."):
            notes.append(f"skipped hidden {entry.name}")
        elif entry.name == MANIFEST_NAME:
            notes.append(f"skipped {MANIFEST_NAME} (the upload writes its own)")
        elif entry.is_dir():
            raise PermanentError(
                f"{entry} is a folder: a version folder is flat (models/<model>/<version>/<file>)"
            )
        elif entry.is_file():
            files.append(LocalFile(entry.name, entry, entry.stat().st_size))
    if not files:
        raise PermanentError(f"{directory} holds no files")
    return files, notes


def check(model: str, version: str, files: list[LocalFile], policy: Policy) -> list[str]:
    """Every reason on_upload would reject the folder, found before a byte is uploaded."""
    by_name = {f.name: f for f in files}

    def read(name: str) -> bytes | None:
        return by_name[name].path.read_bytes() if name in by_name else None

    sizes = {f.name: f.size for f in files}
    index = read(SHARD_INDEX_NAME)
    problems = validate_version(model, version, sizes, read(CONFIG_NAME), index, policy)
    if problems:
        return problems

    def read_range(name: str, start: int, end: int) -> bytes:
        with by_name[name].path.open("rb") as handle:
            handle.seek(start)
            return handle.read(end - start)

    # The same header checks on_upload makes: a bad shard is found before a byte is uploaded.
    weight_map = json.loads(index).get("weight_map") if index else None
    return weights_problems(sizes, weight_map, read_range)


def content_version(files: list[LocalFile], crc32c: dict[str, str]) -> str:
    """The default version: named by the content, so uploading the same folder again resumes it."""
    digest = hashlib.sha256(
        "\n".join(f"{f.name}:{f.size}:{crc32c[f.name]}" for f in files).encode()
    ).hexdigest()
    return f"v-{digest[:10]}"


def checksums(files: list[LocalFile], workers: int, err: TextIO) -> dict[str, str]:
    bar = ProgressBar("checksum", sum(f.size for f in files), err)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        crcs = dict(
            zip(
                [f.name for f in files],
                pool.map(lambda f: file_crc32c(f.path, bar.advance), files),
                strict=True,
            )
        )
    bar.finish()
    return crcs


def plan(
    transfer: Transfer,
    model: str,
    version: str,
    files: list[LocalFile],
    crc32c: dict[str, str],
) -> UploadPlan:
    """Compare the folder with what the bucket already holds under models/<model>/<version>/."""
    folder = VersionFolder(transfer.bucket, model, version)
    existing = transfer.existing(folder.prefix)
    local_names = {f.name for f in files}
    extra = sorted(n for n in existing if n not in local_names and n != MANIFEST_NAME)
    if extra:
        raise PermanentError(
            f"{folder.uri} already holds file(s) this folder lacks: {', '.join(extra)}; "
            "upload to a new --version"
        )
    changed = [
        f.name
        for f in files
        if f.name in existing
        and (existing[f.name].crc32c != crc32c[f.name] or existing[f.name].size != f.size)
    ]
    if MANIFEST_NAME in existing and changed:
        raise PermanentError(
            f"{folder.uri} is a finished upload with different content ({', '.join(changed)}): "
            "versions are immutable once uploaded; upload to a new --version"
        )
    skipped = [f.name for f in files if f.name in existing and f.name not in changed]
    return UploadPlan(
        folder=folder,
        files=files,
        crc32c=crc32c,
        to_upload=[f for f in files if f.name not in skipped],
        generations={
            f.name: existing[f.name].generation if f.name in existing else 0 for f in files
        },
        skipped=skipped,
        complete=MANIFEST_NAME in existing and not changed,
    )


def run_uploads(
    transfer: Transfer,
    upload_plan: UploadPlan,
    workers: int,
    err: TextIO,
    request_id: str | None = None,
) -> float:
    """Upload what the plan lists, `workers` files at a time, the largest first; seconds taken.

    Each file carries the request_id as object metadata: on_upload then waits for the manifest
    instead of judging the folder complete from the files alone (the plain-copy rule).
    """
    metadata = {UPLOAD_METADATA_KEY: request_id} if request_id else None
    todo = sorted(upload_plan.to_upload, key=lambda f: -f.size)
    bar = ProgressBar("upload  ", sum(f.size for f in todo), err)

    def one(file: LocalFile) -> None:
        transfer.upload(
            upload_plan.folder.object_name(file.name),
            file.path,
            file.size,
            upload_plan.crc32c[file.name],
            bar.advance,
            metadata,
            if_generation_match=upload_plan.generations.get(file.name, 0),
        )

    with ThreadPoolExecutor(max_workers=workers) as pool:
        # list(): re-raises the first failure here; the other uploads finish and count as resumed.
        list(pool.map(one, todo))
    return bar.finish()


def manifest_bytes(upload_plan: UploadPlan, request_id: str) -> bytes:
    manifest = Manifest(
        model=upload_plan.folder.model,
        version=upload_plan.folder.version,
        request_id=request_id,
        files=[
            ManifestFile(name=f.name, size=f.size, crc32c=upload_plan.crc32c[f.name])
            for f in upload_plan.files
        ],
    )
    return json.dumps(manifest.model_dump(mode="json"), indent=1).encode()


def default_workers() -> int:
    return min(8, max(4, (os.cpu_count() or 2) * 2))


def describe(upload_plan: UploadPlan) -> str:
    total = sum(f.size for f in upload_plan.files)
    todo = sum(f.size for f in upload_plan.to_upload)
    line = f"{upload_plan.folder.uri}: {len(upload_plan.files)} files, {human_bytes(total)}"
    if upload_plan.skipped:
        line += f"; resuming: {len(upload_plan.skipped)} already there, {human_bytes(todo)} to go"
    return line


Printer = Callable[[str], None]
