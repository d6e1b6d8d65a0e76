"""The upload manifest: written last by the CLI, it lists every file of a version with size and crc32c."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modeldrop.command_fields import RequestId
from modeldrop.errors import PermanentError

FORMAT = "modeldrop-manifest/1"


class ManifestFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=r"^[A-Za-z0-9._-]{1,200}$", description="File name inside the version folder."
    )
    size: int = Field(ge=0)
    crc32c: str = Field(
        pattern=r"^[A-Za-z0-9+/]{6}==$",
        description="Base64 of the big-endian CRC32C, exactly as GCS reports it in object metadata.",
    )


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str = Field(default=FORMAT, pattern=r"^modeldrop-manifest/1$")
    model: str
    version: str
    request_id: RequestId | None = Field(
        default=None, description="The uploader's request_id; the upload's result carries it."
    )
    files: list[ManifestFile] = Field(min_length=1, max_length=10_000)

    def by_name(self) -> dict[str, ManifestFile]:
        return {file.name: file for file in self.files}


def parse_manifest(raw: bytes) -> Manifest:
    try:
        return Manifest.model_validate_json(raw)
    except ValidationError as error:
        reasons = [f"manifest {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()]
        raise PermanentError("the manifest is not valid", reasons) from error
