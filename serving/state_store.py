"""The state bucket as a small-object store: GCS, or a local folder for tests and the local stack."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class Store(Protocol):
    """Objects by name: activity records written, adapter records read, compile caches as files."""

    def write(self, name: str, data: bytes) -> None: ...

    def read(self, name: str) -> bytes | None: ...

    def write_file(self, name: str, path: Path) -> None: ...

    def read_file(self, name: str, path: Path) -> bool:
        """Download `name` to `path`; False when there is no such object."""
        ...


@dataclass(frozen=True)
class DirectoryStore:
    """A local folder standing in for the bucket (tests, the local stack)."""

    root: Path

    def write(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        partial.replace(path)

    def read(self, name: str) -> bytes | None:
        path = self.root / name
        return path.read_bytes() if path.is_file() else None

    def write_file(self, name: str, path: Path) -> None:
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        shutil.copyfile(path, partial)
        partial.replace(target)

    def read_file(self, name: str, path: Path) -> bool:
        source = self.root / name
        if not source.is_file():
            return False
        shutil.copyfile(source, path)
        return True


class BucketStore:
    """A GCS bucket; the client is built on first write (a local folder needs no Google import)."""

    def __init__(self, bucket: str) -> None:
        self.bucket_name = bucket
        self._bucket: Any = None

    def _get(self) -> Any:
        if self._bucket is None:
            from google.cloud import storage

            self._bucket = storage.Client().bucket(self.bucket_name)
        return self._bucket

    def write(self, name: str, data: bytes) -> None:
        self._get().blob(name).upload_from_string(data, content_type="application/json")

    def read(self, name: str) -> bytes | None:
        from google.api_core.exceptions import NotFound

        try:
            data: bytes = self._get().blob(name).download_as_bytes()
        except NotFound:
            return None
        return data

    def write_file(self, name: str, path: Path) -> None:
        # Resumable in chunks for large files (the client's default above 8 MiB).
        self._get().blob(name).upload_from_filename(
            str(path), content_type="application/x-tar", checksum="crc32c"
        )

    def read_file(self, name: str, path: Path) -> bool:
        from google.api_core.exceptions import NotFound

        try:
            # The caller checks the crc32c its manifest records.
            self._get().blob(name).download_to_filename(str(path), checksum=None)
        except NotFound:
            path.unlink(missing_ok=True)
            return False
        return True


def store_for(location: str) -> Store:
    """gs://bucket or a bare bucket name is GCS; file:///dir or a path is a local folder."""
    if location.startswith("gs://"):
        return BucketStore(location[5:].strip("/"))
    if location.startswith("file://"):
        return DirectoryStore(Path(location[7:]))
    if "/" in location:
        return DirectoryStore(Path(location))
    return BucketStore(location)
