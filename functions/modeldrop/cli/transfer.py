"""Moving one file into the weights bucket: crc32c computed locally, bytes counted as they go, checked after."""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from modeldrop.errors import ConflictError, PermanentError
from modeldrop.google_errors import translate
from modeldrop.storage import GcsStorage, StoredObject

READ_BYTES = 8 * 1024 * 1024
# Files above this go up as resumable uploads in chunks of this size (64 MiB: fewer requests than
# smaller chunks, at most --parallel chunks in memory): a dropped connection costs
# one chunk, not the file, and the progress bar moves chunk by chunk.
CHUNK_BYTES = 64 * 1024 * 1024
OnBytes = Callable[[int], None]


def file_crc32c(path: Path, on_bytes: OnBytes = lambda n: None) -> str:
    """Base64 of the big-endian CRC32C of the file, exactly as GCS reports it."""
    import google_crc32c

    checksum = google_crc32c.Checksum()  # type: ignore[no-untyped-call]
    with open(path, "rb") as stream:
        while chunk := stream.read(READ_BYTES):
            checksum.update(chunk)  # type: ignore[no-untyped-call]
            on_bytes(len(chunk))
    return crc32c_b64(checksum.digest())  # type: ignore[no-untyped-call]


def crc32c_b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def crc32c_of(data: bytes) -> str:
    import google_crc32c

    return base64.b64encode(struct.pack(">I", google_crc32c.value(data))).decode()


class CountingReader:
    """A read-only file whose reads report progress; a retry that seeks back is not counted twice."""

    def __init__(self, stream: IO[bytes], on_bytes: OnBytes) -> None:
        self._stream = stream
        self._on_bytes = on_bytes
        self._high = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        position = self._stream.tell()
        if position > self._high:
            self._on_bytes(position - self._high)
            self._high = position
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class Transfer:
    """Uploads into one bucket through the control plane's storage client (emulator-aware)."""

    def __init__(self, project: str, bucket: str) -> None:
        self.storage = GcsStorage(project)
        self.bucket = bucket

    def existing(self, prefix: str) -> dict[str, StoredObject]:
        """Objects already under `prefix`, by file name: what a resumed upload may skip."""
        return {
            obj.name[len(prefix) :]: obj for obj in self.storage.list_objects(self.bucket, prefix)
        }

    def upload(
        self,
        name: str,
        path: Path,
        size: int,
        crc32c: str,
        on_bytes: OnBytes,
        metadata: dict[str, str] | None = None,
        if_generation_match: int | None = None,
    ) -> None:
        """Upload `path` as `name` (replacing only generation `if_generation_match`, 0: none);
        PermanentError if the bucket's crc32c differs from ours or someone else wrote it first."""
        from google.api_core.exceptions import PreconditionFailed

        blob = self.storage.client.bucket(self.bucket).blob(
            name, chunk_size=CHUNK_BYTES if size > CHUNK_BYTES else None
        )
        if metadata:
            blob.metadata = metadata
        try:
            with open(path, "rb") as stream:
                # checksum="crc32c": the client also checks every resumable chunk it sends.
                blob.upload_from_file(
                    CountingReader(stream, on_bytes),
                    size=size,
                    checksum="crc32c",
                    content_type="application/octet-stream",
                    timeout=300,
                    if_generation_match=if_generation_match,
                )
        except PreconditionFailed as error:
            raise PermanentError(
                f"{path.name}: gs://{self.bucket}/{name} was written by someone else during this "
                "upload; versions are immutable, upload to a new --version"
            ) from error
        except Exception as error:
            if "checksum" in str(error).lower():
                raise PermanentError(
                    f"{path.name}: the bucket received different bytes than were sent ({error})"
                ) from error
            raise translate(error, f"uploading {path.name} to gs://{self.bucket}/{name}") from error
        if blob.crc32c != crc32c or int(blob.size or -1) != size:
            raise PermanentError(
                f"{path.name} changed while it was uploaded, or arrived damaged: the bucket holds "
                f"{blob.size} bytes with crc32c {blob.crc32c}, the file was {size} bytes with "
                f"crc32c {crc32c}; run the upload again"
            )

    def write_manifest(self, name: str, data: bytes) -> None:
        # Written once: a finished upload's manifest is never replaced.
        try:
            self.storage.write(self.bucket, name, data, if_generation_match=0)
        except ConflictError as error:
            raise PermanentError(
                f"gs://{self.bucket}/{name} already exists: this version was finished by another "
                "upload; upload to a new --version"
            ) from error
