"""Results: what every command and upload ends in, published to the results topic by request_id."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, computed_field, model_validator

from modeldrop.command_fields import RequestId


class Status(StrEnum):
    """Every status a result can carry; `terminal` says which end a request_id's story."""

    ACCEPTED = "accepted"  # progress: the command parsed; work has started
    PROGRESS = "progress"  # progress: a step of long work (operation running, files checked)
    QUEUED = "queued"  # progress: the endpoint is busy; the command starts when its turn comes
    REGISTERED = "registered"  # terminal: an upload became a new model version
    REJECTED = "rejected"  # terminal: an upload was refused; `reasons` lists every problem
    READY = "ready"  # terminal: a deploy finished and the deployment serves
    SUCCEEDED = "succeeded"  # terminal: undeploy, scale, traffic, delete-endpoint, wake done
    FAILED = "failed"  # terminal: the command could not be carried out; `reasons` says why
    DROPPED = "dropped"  # terminal: the event was older than the maximum age and was not acted on
    SUPERSEDED = (
        "superseded"  # terminal: a newer command made this queued one moot before it started
    )
    TORN_DOWN = "torn_down"  # terminal: the sweep undeployed an idle deployment

    @property
    def terminal(self) -> bool:
        return self not in (Status.ACCEPTED, Status.PROGRESS, Status.QUEUED)


Kind = Literal["command", "upload", "sweep"]


class Result(BaseModel):
    """One event in a request's story; exactly one per request_id is terminal."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The same pattern as a command's: subscribers filter on it, so no result may break it.
    request_id: RequestId
    kind: Kind
    action: str = Field(description="The command's action, 'upload', or 'teardown' for the sweep.")
    status: Status
    message: str = ""
    reasons: list[str] = Field(default_factory=list)
    model: str | None = None
    version: str | None = None
    endpoint: str | None = None
    operation: str | None = Field(default=None, description="Vertex long-running operation name.")
    details: dict[str, Any] = Field(default_factory=dict)
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @model_validator(mode="before")
    @classmethod
    def _drop_computed(cls, data: Any) -> Any:
        # A published result carries `terminal` (computed from status): reading one back ignores it.
        if isinstance(data, dict) and "terminal" in data:
            return {k: v for k, v in data.items() if k != "terminal"}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def terminal(self) -> bool:
        return self.status.terminal

    def attributes(self) -> dict[str, str]:
        """Pub/Sub message attributes, so subscribers can filter without parsing the body."""
        return {
            "request_id": self.request_id,
            "status": self.status.value,
            "terminal": "true" if self.terminal else "false",
            "kind": self.kind,
        }


def upload_request_id(bucket: str, model: str, version: str, generations: list[int]) -> str:
    """A plain copy's request_id: the same files (by generation) always give the same id."""
    digest = hashlib.sha256(
        f"{bucket}/{model}/{version}@{','.join(map(str, sorted(generations)))}".encode()
    ).hexdigest()[:16]
    return f"upload-{model}-{version}-{digest}"[:128]


def result_json_schema() -> dict[str, Any]:
    return TypeAdapter(Result).json_schema(mode="serialization")
