"""Commands: one JSON object per Pub/Sub message, one action each, parsed once at the boundary."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from modeldrop import jsonlimits
from modeldrop.command_fields import (
    REQUEST_ID_PATTERN,
    CommandBase,
    Duration,
    EndpointName,
    ModelName,
    ServingArgs,
    VersionName,
)
from modeldrop.errors import PermanentError

MAX_COMMAND_BYTES = 64 * 1024
PEEK_MAX_BYTES = 10 * 1024 * 1024  # Pub/Sub's maximum message size
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN.removeprefix("^").removesuffix("$"))


MAX_PLACEMENTS = 8


class Placement(BaseModel):
    """One machine a deploy may run on: tried in the order given, the next on a stockout."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    machine_type: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9-]{1,63}$",
        description="Vertex machine type; derived from the accelerator if absent.",
    )
    accelerator: str | None = Field(
        pattern=r"^[A-Z0-9_]{1,63}$",
        description="Vertex accelerator type (NVIDIA_L4, ...); null for CPU only. Required.",
    )
    accelerator_count: int = Field(default=1, ge=1, le=16)


IdlePolicy = Literal["teardown", "scale-to-zero"]


class Deploy(CommandBase):
    """Create or reuse the endpoint and deploy a model version onto it."""

    action: Literal["deploy"]
    model: ModelName
    version: VersionName | None = Field(
        default=None, description="Version folder; the model's latest registered version if absent."
    )
    endpoint: EndpointName | None = Field(
        default=None, description="Endpoint id; the model's name if absent."
    )
    machine_type: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9-]{1,63}$",
        description="Vertex machine type; derived from the accelerator if absent.",
    )
    accelerator: str | None = Field(
        default="NVIDIA_L4",
        pattern=r"^[A-Z0-9_]{1,63}$",
        description="Vertex accelerator type (NVIDIA_L4, NVIDIA_H100_80GB, ...); null for CPU only.",
    )
    accelerator_count: int = Field(default=1, ge=1, le=16)
    min_replicas: int = Field(default=1, ge=1, le=100)
    max_replicas: int | None = Field(default=None, ge=1, le=100)
    idle_ttl: Duration | None = Field(
        default=None,
        description="Undeploy after this long without traffic; the default TTL if absent.",
    )
    keep_warm: bool = Field(default=False, description="Never undeploy for idleness.")
    traffic_percent: int = Field(
        default=100,
        ge=0,
        le=100,
        description="Share of the endpoint's traffic for this deployment.",
    )
    serving_args: ServingArgs = None
    placements: list[Placement] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PLACEMENTS,
        description="Machines to try in order (instead of machine_type/accelerator/"
        "accelerator_count): on a stockout the next is tried; a quota refusal ends the deploy.",
    )
    idle_policy: IdlePolicy = Field(
        default="teardown",
        description="teardown: the sweep undeploys after idle_ttl; scale-to-zero: Vertex scales "
        "the deployment to zero replicas itself (v1beta1, Preview) after idle_ttl, clamped to 5m-8h.",
    )

    @model_validator(mode="after")
    def _replicas_ordered(self) -> Deploy:
        if self.max_replicas is not None and self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})"
            )
        return self

    @model_validator(mode="after")
    def _one_way_to_place(self) -> Deploy:
        if self.placements is None:
            return self
        both = sorted({"machine_type", "accelerator", "accelerator_count"} & self.model_fields_set)
        if both:
            raise ValueError(f"give the machine as placements or as {'/'.join(both)}, not both")
        for i, placement in enumerate(self.placements):
            if placement in self.placements[:i]:
                raise ValueError(
                    f"placement {i + 1} repeats placement {self.placements.index(placement) + 1}"
                )
        return self

    @model_validator(mode="after")
    def _scale_to_zero_fits(self) -> Deploy:
        # What Vertex's scale-to-zero (Preview) can't do is refused here, before anything is made.
        if self.idle_policy != "scale-to-zero":
            return self
        if self.keep_warm:
            raise ValueError("keep_warm and idle_policy scale-to-zero contradict each other")
        if self.idle_ttl == 0:
            raise ValueError(
                "idle_ttl 0 (never idle) can't be a scale-to-zero period: give 5m to 8h, or "
                "idle_policy teardown"
            )
        if self.traffic_percent != 100:
            raise ValueError(
                "a scale-to-zero deployment is the only model on its endpoint: traffic_percent "
                "must be 100"
            )
        return self

    def placement_list(self) -> list[Placement]:
        """The machines to try, in order (one when the command names a single machine)."""
        if self.placements is not None:
            return list(self.placements)
        return [
            Placement(
                machine_type=self.machine_type,
                accelerator=self.accelerator,
                accelerator_count=self.accelerator_count,
            )
        ]

    @property
    def endpoint_name(self) -> str:
        return self.endpoint or self.model


class Undeploy(CommandBase):
    """Undeploy one version (or every deployment) from an endpoint, re-splitting traffic first."""

    action: Literal["undeploy"]
    endpoint: EndpointName
    version: VersionName | None = Field(
        default=None, description="Version to undeploy; every deployment on the endpoint if absent."
    )


class Scale(CommandBase):
    """Change a deployment's replica range."""

    action: Literal["scale"]
    endpoint: EndpointName
    version: VersionName | None = Field(
        default=None, description="Version to scale; required when the endpoint has several."
    )
    min_replicas: int = Field(ge=1, le=100)
    max_replicas: int | None = Field(default=None, ge=1, le=100)

    @model_validator(mode="after")
    def _replicas_ordered(self) -> Scale:
        if self.max_replicas is not None and self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})"
            )
        return self


class Traffic(CommandBase):
    """Split an endpoint's traffic between its deployed versions (a canary)."""

    action: Literal["traffic"]
    endpoint: EndpointName
    split: dict[VersionName, Annotated[int, Field(ge=0, le=100)]] = Field(
        min_length=1, description="Version -> percent; the percents add up to 100."
    )

    @model_validator(mode="after")
    def _adds_up(self) -> Traffic:
        total = sum(self.split.values())
        if total != 100:
            raise ValueError(f"traffic split adds up to {total}, not 100")
        return self


class DeleteEndpoint(CommandBase):
    """Delete an endpoint; with force, undeploy what it serves first."""

    action: Literal["delete-endpoint"]
    endpoint: EndpointName
    force: bool = False


class Register(CommandBase):
    """Register an uploaded version folder explicitly (as if its last file had just arrived)."""

    action: Literal["register"]
    model: ModelName
    version: VersionName
    bucket: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$",
        description="Weights bucket; the configured one if absent.",
    )


class Wake(CommandBase):
    """Bring back what the sweep tore down on an endpoint, as it was deployed."""

    action: Literal["wake"]
    endpoint: EndpointName


Command = Annotated[
    Deploy | Undeploy | Scale | Traffic | DeleteEndpoint | Register | Wake,
    Field(discriminator="action"),
]
ACTIONS = ("deploy", "undeploy", "scale", "traffic", "delete-endpoint", "register", "wake")
_ACTION = re.compile(r"[a-z][a-z-]{0,39}")

_COMMAND = TypeAdapter[Command](Command)


def command_json_schema() -> dict[str, Any]:
    return _COMMAND.json_schema()


def parse_command(data: bytes | str | dict[str, Any]) -> Command:
    """One command from a message body (or its JSON object); PermanentError lists every problem found.

    Always validated as JSON, whatever the caller holds: the rules are those of a message on the
    topic, so a command built in Python (the CLI, a deploy policy) can't pass where a published
    one would fail.
    """
    if isinstance(data, dict):
        data = json.dumps(data)
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_COMMAND_BYTES:
        raise PermanentError(f"command is {len(raw)} bytes; the limit is {MAX_COMMAND_BYTES}")
    try:
        # pydantic's parser stops at a fixed nesting depth with a ValidationError, never a crash.
        return _COMMAND.validate_json(raw)
    except ValidationError as error:
        raise PermanentError("invalid command", _reasons(error)) from error


@dataclass(frozen=True)
class Peek:
    """What a message that failed to parse still tells: for keying and naming its failed result."""

    request_id: str | None  # the body's request_id when it is a valid one
    request_id_problem: str | None  # why the body's request_id can't key a result, if it has one
    action: str


def peek(data: bytes) -> Peek:
    """The request id and action of any message body, however broken; never raises."""
    try:
        # Up to Pub/Sub's own message limit: a command too large to carry out still gets its
        # `failed` result under the request id its sender follows.
        body = jsonlimits.loads(data, max_bytes=PEEK_MAX_BYTES, what="the command")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return Peek(None, None, "unknown")
    action = body.get("action")
    action = action if isinstance(action, str) and _ACTION.fullmatch(action) else "unknown"
    rid = body.get("request_id")
    if rid is None:
        return Peek(None, None, action)
    if isinstance(rid, str) and _REQUEST_ID.fullmatch(rid):
        return Peek(rid, None, action)
    shown = repr(rid)[:60] if isinstance(rid, str) else f"a {type(rid).__name__}"
    return Peek(None, f"request_id {shown} does not match {REQUEST_ID_PATTERN}", action)


def _reasons(error: ValidationError) -> list[str]:
    reasons = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "command"
        reasons.append(f"{where}: {item['msg']}")
    return reasons
