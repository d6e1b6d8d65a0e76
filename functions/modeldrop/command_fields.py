"""The fields commands share: names and ids with Vertex's patterns, durations, serving args, and
the base every command model extends (commands.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)

from modeldrop import serving_flags
from modeldrop.durations import parse_duration
from modeldrop.naming import RESERVED_VERSIONS

LABEL_SAFE_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
# A model name is a folder, a label value and a Vertex model id, which can't start with a digit.
MODEL_NAME_PATTERN = r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"
# CreateEndpointRequest.endpoint_id: a letter then up to 62 of [a-z0-9-] ending in a letter or
# digit, or up to 9 digits with no leading zero.
ENDPOINT_ID_PATTERN = r"^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[1-9][0-9]{0,8})$"
REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"

RequestId = Annotated[
    str,
    Field(
        pattern=REQUEST_ID_PATTERN,
        description="Idempotency key: a command with a request_id already seen changes nothing.",
    ),
]
ModelName = Annotated[
    str,
    Field(
        pattern=MODEL_NAME_PATTERN,
        description="Model name, as in models/<model>/ (starts with a letter).",
    ),
]


def _not_reserved(version: str) -> str:
    if version in RESERVED_VERSIONS:
        raise ValueError(
            f"{version!r} is reserved (Vertex's aliases and the adapters folder) and can't be a "
            "version folder; leave `version` out for the latest"
        )
    return version


VersionName = Annotated[
    str,
    Field(
        pattern=LABEL_SAFE_PATTERN, description="Version folder, as in models/<model>/<version>/."
    ),
    AfterValidator(_not_reserved),
]
EndpointName = Annotated[
    str,
    Field(pattern=ENDPOINT_ID_PATTERN, description="Endpoint id (also its display name)."),
]
Duration = Annotated[
    int,
    BeforeValidator(parse_duration),
    Field(ge=0, le=30 * 86400),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": 30 * 86400},
                {"type": "string", "pattern": r"^\s*\d+\s*[smhd]?\s*$"},
            ],
            "description": "Seconds, or a string like '90s', '30m', '2h', '1d'; 0 disables.",
        }
    ),
]


def _known_serving_args(args: list[str] | None) -> list[str] | None:
    problems = serving_flags.problems(args) if args is not None else []
    if problems:
        raise ValueError("; ".join(problems))
    return args


ServingArgs = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=serving_flags.MAX_ARG_CHARS)]] | None,
    Field(
        max_length=serving_flags.MAX_ARGS,
        description="vLLM engine and server flags for this deployment (e.g. ['--max-model-len', "
        "'2048']), applied after the model's own; flags vLLM does not know, the model's pinned ones "
        "(--model, --served-model-name, --host, --port, --trust-remote-code, "
        "--allow-unsafe-weights) and unsupported ones are refused.",
    ),
    AfterValidator(_known_serving_args),
]


class CommandBase(BaseModel):
    # Strict: "2" is not a replica count and "yes" is not a boolean. Durations take strings by
    # design (their own validator runs first).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    request_id: RequestId
    issued_at: datetime | None = Field(
        default=None,
        description="When the command was issued; commands older than the maximum age are dropped.",
    )
