"""The Cloud Storage adapter: list a version folder, read and conditionally write small objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from modeldrop.errors import ConflictError, TransientError
from modeldrop.google_errors import translate

if TYPE_CHECKING:
    import google.cloud.storage as gcs


@dataclass(frozen=True)
class StoredObject:
    """One object as the bucket reports it."""

    name: str
    size: int
    crc32c: str
    generation: int
    metadata: dict[str, str] = field(default_factory=dict)  # the object's custom metadata
    updated: datetime | None = None  # when this generation was written


@dataclass(frozen=True)
class Versioned:
    """An object's bytes and the generation they were read at (for a conditional write)."""

    data: bytes
    generation: int


class Storage(Protocol):
    def list_objects(self, bucket: str, prefix: str) -> list[StoredObject]: ...

    def read(self, bucket: str, name: str) -> Versioned | None: ...

    def read_range(self, bucket: str, name: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of the object (fewer at its end); TransientError if it is gone."""
        ...

    def write(
        self,
        bucket: str,
        name: str,
        data: bytes,
        if_generation_match: int | None = None,
        metadata: dict[str, str] | None = None,
    ) -> int:
        """Write `data` (and custom `metadata`); with `if_generation_match` (0: must not exist) raise ConflictError on a race."""
        ...

    def delete(self, bucket: str, name: str) -> None: ...

    def upload_file(self, bucket: str, name: str, path: Path) -> StoredObject: ...


@cache
def _client(project: str) -> gcs.Client:
    import google.cloud.storage as gcs

    # STORAGE_EMULATOR_HOST, when set, is read by the client itself and implies anonymous access.
    return gcs.Client(project=project)


class GcsStorage:
    """Storage over the google-cloud-storage client (fake-gcs-server when STORAGE_EMULATOR_HOST is set)."""

    def __init__(self, project: str) -> None:
        self._project = project

    @property
    def client(self) -> gcs.Client:
        return _client(self._project)

    def list_objects(self, bucket: str, prefix: str) -> list[StoredObject]:
        try:
            return [
                StoredObject(
                    blob.name,
                    int(blob.size or 0),
                    blob.crc32c or "",
                    int(blob.generation),
                    dict(blob.metadata or {}),
                    blob.updated,
                )
                for blob in self.client.list_blobs(bucket, prefix=prefix)
            ]
        except Exception as error:
            raise translate(error, f"listing gs://{bucket}/{prefix}") from error

    def read(self, bucket: str, name: str) -> Versioned | None:
        from google.api_core.exceptions import NotFound

        blob = self.client.bucket(bucket).blob(name)
        try:
            data = blob.download_as_bytes()
        except NotFound:
            return None
        except Exception as error:
            raise translate(error, f"reading gs://{bucket}/{name}") from error
        return Versioned(data, int(blob.generation or 0))

    def read_range(self, bucket: str, name: str, start: int, end: int) -> bytes:
        # One ranged GET (the API's inclusive `Range: bytes=start-(end-1)`): a header, not the weights.
        from google.api_core.exceptions import NotFound

        blob = self.client.bucket(bucket).blob(name)
        try:
            return bytes(blob.download_as_bytes(start=start, end=end - 1))
        except NotFound as error:
            # Listed a moment ago: the folder is changing under us; judge it again on redelivery.
            raise TransientError(f"gs://{bucket}/{name} was listed but is gone") from error
        except Exception as error:
            raise translate(error, f"reading gs://{bucket}/{name} [{start}, {end})") from error

    def write(
        self,
        bucket: str,
        name: str,
        data: bytes,
        if_generation_match: int | None = None,
        metadata: dict[str, str] | None = None,
    ) -> int:
        from google.api_core.exceptions import PreconditionFailed

        blob = self.client.bucket(bucket).blob(name)
        blob.metadata = metadata
        try:
            blob.upload_from_string(
                data, content_type="application/json", if_generation_match=if_generation_match
            )
        except PreconditionFailed as error:
            raise ConflictError(f"gs://{bucket}/{name} changed since it was read") from error
        except Exception as error:
            raise translate(error, f"writing gs://{bucket}/{name}") from error
        return int(blob.generation or 0)

    def delete(self, bucket: str, name: str) -> None:
        from google.api_core.exceptions import NotFound

        try:
            self.client.bucket(bucket).blob(name).delete()
        except NotFound:
            pass
        except Exception as error:
            raise translate(error, f"deleting gs://{bucket}/{name}") from error

    def upload_file(self, bucket: str, name: str, path: Path) -> StoredObject:
        blob = self.client.bucket(bucket).blob(name)
        try:
            blob.upload_from_filename(str(path))
        except Exception as error:
            raise translate(error, f"uploading {path.name} to gs://{bucket}/{name}") from error
        return StoredObject(name, int(blob.size or 0), blob.crc32c or "", int(blob.generation or 0))
