"""vLLM's compile cache kept in the state bucket: restored before the engine starts, saved once after ready.

What vLLM 0.32 computes at start and keeps under VLLM_CACHE_ROOT (read in vllm/compilation/
backends.py, decorators.py and model_executor/models/registry.py):
- `torch_compile_cache/`: its torch.compile artifacts. With AOT compile (the default on torch
  ≥ 2.10, CPU included) `torch_aot_compile/<hash>/rank_i_j/model` plus that hash's
  `inductor_cache/`; otherwise `<hash>/rank_i_j/<prefix>/` with `inductor_cache/` and
  `triton_cache/` beside it. vLLM names each folder by its own hash of the config, code and
  compiler, so a folder restored for other options is never used: it is only downloaded for nothing.
- `triton_cache/` and `inductor_cache/`: Triton's compiled kernels and inductor's own cache,
  where the container points TRITON_CACHE_DIR and TORCHINDUCTOR_CACHE_DIR (unless set; vLLM
  moves inductor's into `torch_compile_cache/` in its own compile modes).
- `modelinfos/`: what vLLM learned about the model class, which it otherwise finds out in a
  Python subprocess that imports vLLM and torch again (seconds on every start).

The archive is a tar of those folders, the first member recording the key it was made for.
`compile-cache/<key>.json` (written last) names it, with its size and crc32c.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

from serving import weights
from serving.state_store import Store

logger = logging.getLogger(__name__)

PREFIX = "compile-cache/"
ENTRIES = ("torch_compile_cache", "modelinfos", "triton_cache", "inductor_cache")
INNER = "modeldrop-compile-cache.json"  # the archive's first member: the key it was made for
FORMAT = 1


class CompileCacheError(RuntimeError):
    """A saved cache is unusable (corrupt, for another key, too large); the start goes on without it."""


@dataclass(frozen=True)
class CacheKey:
    """What a compile cache depends on; `digest` names it in the bucket."""

    factors: Mapping[str, str]

    @property
    def digest(self) -> str:
        text = json.dumps(dict(self.factors), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @property
    def manifest_name(self) -> str:
        return f"{PREFIX}{self.digest}.json"

    def archive_name(self, crc32c: str) -> str:
        # Named by content: a replica saving the same key at once never overwrites the archive
        # another replica's manifest names.
        return f"{PREFIX}{self.digest}/{base64.b64decode(crc32c).hex()}.tar"


def save(store: Store, key: CacheKey, root: Path, max_bytes: int) -> str:
    """Upload the local cache for `key` unless one is saved already; returns what was done."""
    if store.read(key.manifest_name) is not None:
        return "present"
    files = _cached_files(root)
    if not files:
        return "empty"
    total = sum(size for _, size in files)
    if total > max_bytes:
        raise CompileCacheError(
            f"the compile cache holds {total} bytes, more than --compile-cache-max-bytes "
            f"({max_bytes}): not saved"
        )
    with tempfile.TemporaryDirectory(prefix="modeldrop-compile-cache-") as work:
        archive = Path(work) / "cache.tar"
        _pack(root, files, key, archive)
        crc32c = weights.crc32c_of(archive)
        size = archive.stat().st_size
        name = key.archive_name(crc32c)
        store.write_file(name, archive)
        manifest = {
            "format": FORMAT,
            "key": key.digest,
            "factors": dict(key.factors),
            "archive": name,
            "size": size,
            "crc32c": crc32c,
            "files": len(files),
        }
        store.write(key.manifest_name, json.dumps(manifest, indent=2).encode())
    return "saved"


def restore(store: Store, key: CacheKey, root: Path) -> str:
    """Put the saved cache for `key` under `root`; "absent" when none is saved.

    Raises CompileCacheError when one is saved but unusable; nothing is left half-written.
    """
    raw = store.read(key.manifest_name)
    if raw is None:
        return "absent"
    try:
        manifest = json.loads(raw)
        name, size, crc32c = str(manifest["archive"]), int(manifest["size"]), manifest["crc32c"]
        recorded = manifest["key"]
    except (ValueError, KeyError, TypeError) as error:
        raise CompileCacheError(f"{key.manifest_name} is not a valid manifest: {error}") from None
    if recorded != key.digest:
        raise CompileCacheError(f"{key.manifest_name} records key {recorded!r}, not this start's")
    if not name.startswith(f"{PREFIX}{key.digest}/") or ".." in name.split("/"):
        raise CompileCacheError(f"{key.manifest_name} names {name!r}, not one of its archives")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".modeldrop-restore-", dir=root) as work:
        archive = Path(work) / "cache.tar"
        if not store.read_file(name, archive):
            raise CompileCacheError(f"{name}, named by {key.manifest_name}, is missing")
        try:
            weights.verify_file(archive, weights.RemoteFile(name, size, str(crc32c)))
        except weights.WeightsError as error:
            raise CompileCacheError(str(error)) from None
        staging = Path(work) / "files"
        count = _unpack(archive, key, staging)
        _merge(staging, root)
    return f"restored {count} files"


class Keeper:
    """This start's restore and save; neither ever fails the start (a problem is a warning)."""

    def __init__(
        self, store: Store, key: Callable[[], CacheKey], root: Path, max_bytes: int
    ) -> None:
        self.store = store
        self.make_key = key
        self.root = root
        self.max_bytes = max_bytes
        self.key: CacheKey | None = None

    def restore(self) -> str:
        """Before the engine starts: the saved cache for this start's key, if any and intact."""
        try:
            self.key = self.make_key()
            outcome = restore(self.store, self.key, self.root)
        except Exception as error:  # corrupt, mismatched, unreadable: compile from scratch
            logger.warning(
                "compile cache not restored: the engine compiles from scratch",
                extra={"error": f"{type(error).__name__}: {error}", **self._where()},
            )
            return "ignored"
        logger.info(
            "compile cache " + outcome.split()[0], extra={"outcome": outcome, **self._where()}
        )
        return outcome

    def save_in_background(self) -> threading.Thread | None:
        """After ready: upload the cache unless saved already, in a daemon thread (a shutdown
        never waits for it; an archive without its manifest is never read)."""
        if self.key is None:
            return None
        thread = threading.Thread(
            target=self._save, args=(self.key,), name="compile-cache-save", daemon=True
        )
        thread.start()
        return thread

    def _save(self, key: CacheKey) -> None:
        try:
            outcome = save(self.store, key, self.root, self.max_bytes)
        except Exception as error:  # a full bucket, no permission: the next start compiles
            logger.warning(
                "compile cache not saved",
                extra={"error": f"{type(error).__name__}: {error}", **self._where()},
            )
            return
        logger.info(f"compile cache {outcome}", extra={"outcome": outcome, **self._where()})

    def _where(self) -> dict[str, Any]:
        if self.key is None:
            return {"cache_root": str(self.root)}
        return {
            "key": self.key.digest,
            "factors": dict(self.key.factors),
            "cache_root": str(self.root),
        }


def _cached_files(root: Path) -> list[tuple[Path, int]]:
    found: list[tuple[Path, int]] = []
    for entry in ENTRIES:
        top = root / entry
        if not top.is_dir():
            continue
        for path in sorted(top.rglob("*")):
            if path.is_file() and not path.is_symlink() and not path.name.endswith(".tmp"):
                found.append((path, path.stat().st_size))
    return found


def _pack(root: Path, files: list[tuple[Path, int]], key: CacheKey, archive: Path) -> None:
    inner = json.dumps({"format": FORMAT, "key": key.digest, "factors": dict(key.factors)})
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo(INNER)
        info.size = len(inner.encode())
        tar.addfile(info, BytesIO(inner.encode()))
        for path, _ in files:
            tar.add(path, arcname=path.relative_to(root).as_posix(), recursive=False)


def _unpack(archive: Path, key: CacheKey, staging: Path) -> int:
    try:
        with tarfile.open(archive, "r:") as tar:
            first = tar.next()
            if first is None or first.name != INNER or not first.isfile():
                raise CompileCacheError(f"the archive does not start with {INNER}")
            inner: Any = json.load(tar.extractfile(first) or BytesIO(b"null"))
            if not isinstance(inner, dict) or inner.get("key") != key.digest:
                recorded = inner.get("key") if isinstance(inner, dict) else None
                raise CompileCacheError(
                    f"the archive was made for key {recorded!r}, not this start's {key.digest!r}"
                )
            members = [m for m in tar.getmembers() if m.name != INNER]
            for member in members:
                _check_member(member)
            # The "data" filter refuses links, devices and paths leaving the folder a second time.
            tar.extractall(staging, members=members, filter="data")
    except (tarfile.TarError, OSError, ValueError) as error:
        raise CompileCacheError(f"the archive is unreadable: {error}") from None
    return sum(1 for m in members if m.isfile())


def _check_member(member: tarfile.TarInfo) -> None:
    parts = Path(member.name).parts
    if (
        not parts
        or parts[0] not in ENTRIES
        or member.name.startswith("/")
        or ".." in parts
        or not (member.isfile() or member.isdir())
    ):
        raise CompileCacheError(f"the archive holds {member.name!r}, outside what it may hold")


def _merge(staging: Path, root: Path) -> None:
    """Move the staged files into place; files already there (this machine's own) are kept."""
    for path in sorted(staging.rglob("*")):
        if not path.is_file():
            continue
        target = root / path.relative_to(staging)
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.replace(path, target)
    shutil.rmtree(staging, ignore_errors=True)
