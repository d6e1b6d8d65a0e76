"""Model weights: a local folder or a gs:// folder downloaded in parallel, checked before the engine sees them."""

from __future__ import annotations

import base64
import importlib
import json
import logging
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MANIFEST_NAME = "modeldrop-manifest.json"
SAFE_SUFFIXES = (".safetensors",)
# Pickle-based formats run code when loaded: refused unless explicitly allowed.
UNSAFE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_CHUNK = 4 * 1024 * 1024


class WeightsError(RuntimeError):
    """The weights are missing, corrupted or not allowed; the message says which file and why."""


@dataclass(frozen=True)
class RemoteFile:
    """One object of a gs:// folder, with what GCS (and the manifest, if any) says it must be."""

    name: str
    size: int
    crc32c: str | None


def split_gs_uri(uri: str) -> tuple[str, str]:
    """`gs://bucket/a/b` → ("bucket", "a/b/")."""
    if not uri.startswith("gs://"):
        raise WeightsError(f"not a gs:// URI: {uri!r}")
    bucket, _, prefix = uri[len("gs://") :].partition("/")
    if not bucket:
        raise WeightsError(f"no bucket in {uri!r}")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def crc32c_of(path: Path) -> str:
    """Base64 of the big-endian CRC32C of a file, the way GCS reports it."""
    crc32c: Any = importlib.import_module("google_crc32c")  # untyped C extension
    checksum = crc32c.Checksum()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            checksum.update(chunk)
    return base64.b64encode(struct.pack(">I", int.from_bytes(checksum.digest(), "big"))).decode()


def verify_file(path: Path, expected: RemoteFile) -> None:
    """Raise WeightsError unless `path` has the expected size and crc32c."""
    size = path.stat().st_size
    if size != expected.size:
        raise WeightsError(
            f"{expected.name}: size {size} bytes, expected {expected.size} (corrupted or truncated)"
        )
    if expected.crc32c is not None:
        actual = crc32c_of(path)
        if actual != expected.crc32c:
            raise WeightsError(
                f"{expected.name}: crc32c {actual}, expected {expected.crc32c} (corrupted)"
            )


def check_folder(folder: Path, allow_unsafe: bool = False, trust_remote_code: bool = False) -> None:
    """Refuse a folder the engine must not load: no config, no safetensors, pickles, remote code."""
    if not folder.is_dir():
        raise WeightsError(f"model folder {str(folder)!r} does not exist")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise WeightsError(f"{folder}: no config.json")
    try:
        config: Any = json.loads(config_path.read_text())
    except (OSError, ValueError) as error:
        raise WeightsError(f"{folder}/config.json is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise WeightsError(f"{folder}/config.json must hold a JSON object")
    if "auto_map" in config and not trust_remote_code:
        raise WeightsError(
            f"{folder}/config.json has auto_map: the model needs code shipped with its weights; "
            "this is refused unless --trust-remote-code (MODELDROP_SERVING_TRUST_REMOTE_CODE) is set"
        )
    names = [p.name for p in folder.iterdir() if p.is_file()]
    unsafe = sorted(n for n in names if n.endswith(UNSAFE_SUFFIXES))
    safe = [n for n in names if n.endswith(SAFE_SUFFIXES)]
    if unsafe and not allow_unsafe:
        raise WeightsError(
            f"{folder} holds pickle-based weights ({', '.join(unsafe[:3])}); only safetensors are "
            "loaded unless --allow-unsafe-weights (MODELDROP_SERVING_ALLOW_UNSAFE_WEIGHTS) is set"
        )
    if not safe and not (unsafe and allow_unsafe):
        raise WeightsError(f"{folder}: no *.safetensors weights")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError) as error:
            raise WeightsError(f"{index} is not a valid safetensors index: {error}") from None
        missing = sorted(shards - set(names))
        if missing:
            raise WeightsError(f"{folder}: shards named by the index are missing: {missing}")


def local_name(uri: str) -> str:
    """A cache folder name for a gs:// URI (readable, and distinct per bucket and path)."""
    bucket, prefix = split_gs_uri(uri)
    return "--".join(part for part in [bucket, *prefix.strip("/").split("/")] if part)


def download(uri: str, cache_dir: Path, workers: int = 8, client: Any = None) -> Path:
    """Download the gs:// folder `uri` into the cache (reusing files that check out) and verify it."""
    bucket_name, prefix = split_gs_uri(uri)
    if client is None:
        # Imported here: a local folder needs no Google client (nor its import time).
        from google.cloud import storage

        client = storage.Client()
    bucket = client.bucket(bucket_name)
    blobs = {
        blob.name[len(prefix) :]: blob
        for blob in client.list_blobs(bucket_name, prefix=prefix)
        if not blob.name.endswith("/") and "/" not in blob.name[len(prefix) :]
    }
    if not blobs:
        raise WeightsError(f"{uri}: no objects under this folder")
    expected = {name: RemoteFile(name, int(blob.size), blob.crc32c) for name, blob in blobs.items()}
    target = cache_dir / local_name(uri)
    target.mkdir(parents=True, exist_ok=True)
    _fetch_all(bucket, prefix, list(expected.values()), target, workers)
    if MANIFEST_NAME in expected:
        _check_manifest(target, expected)
    logger.info(
        "weights downloaded and verified",
        extra={"uri": uri, "files": len(expected), "path": str(target)},
    )
    return target


def _fetch_all(
    bucket: Any, prefix: str, files: list[RemoteFile], target: Path, workers: int
) -> None:
    def fetch(remote: RemoteFile) -> None:
        path = target / remote.name
        if path.is_file():
            try:
                verify_file(path, remote)
                return  # already cached and intact
            except WeightsError:
                logger.warning(
                    "cached file is stale or corrupted; downloading it again",
                    extra={"file": remote.name},
                )
        partial = path.with_name(path.name + ".partial")
        bucket.blob(prefix + remote.name).download_to_filename(str(partial), checksum=None)
        verify_file(partial, remote)
        partial.replace(path)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        # list() re-raises the first failure here, in this thread.
        list(pool.map(fetch, sorted(files, key=lambda f: -f.size)))


def _check_manifest(target: Path, objects: dict[str, RemoteFile]) -> None:
    """The upload manifest (written last by the uploader) must agree with every file it lists."""
    try:
        manifest = json.loads((target / MANIFEST_NAME).read_text())
        listed = [RemoteFile(f["name"], int(f["size"]), f["crc32c"]) for f in manifest["files"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise WeightsError(f"{MANIFEST_NAME} is not valid: {error}") from None
    problems: list[str] = []
    for remote in listed:
        if remote.name not in objects:
            problems.append(f"{remote.name}: listed in the manifest but missing")
            continue
        try:
            verify_file(target / remote.name, remote)
        except WeightsError as error:
            problems.append(str(error))
    if problems:
        raise WeightsError("the weights do not match their manifest: " + "; ".join(problems))


def prepare(
    model: str,
    cache_dir: Path,
    workers: int = 8,
    allow_unsafe: bool = False,
    trust_remote_code: bool = False,
) -> Path:
    """The local folder to load `model` from: downloaded first if it is gs://, checked either way."""
    folder = download(model, cache_dir, workers) if model.startswith("gs://") else Path(model)
    check_folder(folder, allow_unsafe=allow_unsafe, trust_remote_code=trust_remote_code)
    return folder
