"""The state bucket's records as plain values: what a request, an operation, a lease and a teardown
look like once written (state.py reads and writes them; decisions read them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modeldrop.results import Result

# The actions that bring a deployment up (a deploy note follows them: DeployNote).
DEPLOY_ACTIONS = ("deploy", "wake")


class RequestState(StrEnum):
    STARTED = "started"  # claimed; the operation may or may not have started on Vertex
    QUEUED = "queued"  # waiting in its endpoint's queue (queue/<endpoint>/); nothing started yet
    RECORDED = "recorded"  # its Vertex operation is recorded; the sweep reports the end
    DONE = "done"  # its terminal result is decided (in `result`) and published, or in the outbox


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Lease(_Record):
    holder: str | None = None
    expires_at: datetime | None = None


class RequestRecord(_Record):
    request_id: str
    kind: str
    action: str
    state: RequestState
    endpoint: str | None = None
    operation: str | None = None
    status: str | None = Field(default=None, description="The terminal result's status once done.")
    at: datetime
    result: Result | None = Field(
        default=None,
        description="The request's one terminal result, recorded before it is published "
        "(reporting.py): every later publication of this request_id repeats it.",
    )


class OperationRecord(_Record):
    """An operation a function started (or was about to start: `operation` None until recorded).

    A request that changes several deployments (undeploy-all, delete --force, wake) records every
    step at once and starts them one at a time, as Google's SDK does: the later ones `deferred`.
    """

    operation: str | None = None
    request_id: str
    action: str
    endpoint: str
    model: str | None = None
    version: str | None = None
    deployed_model_id: str | None = None
    started_at: datetime
    part: int = Field(
        default=0, description="Which of a request's operations (wake, undeploy-all)."
    )
    parts: int = Field(default=1, description="How many operations the request started in all.")
    deferred: bool = Field(
        default=False,
        description="A later step, not started: the sweep starts it once the steps before it ended.",
    )
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"operations/{self.endpoint}/{self.request_id}.{self.part}.json"


class DeployNote(_Record):
    """The latest deploy or wake started (or queued) on an endpoint, and how it ended once it has
    (deploys/<endpoint>.json): one object whose name the gateway knows, so it can tell "a deploy is
    under way" without listing operations/ or queue/ (its grants read objects, never list)."""

    request_id: str
    action: str
    at: datetime
    status: str | None = Field(
        default=None, description="The request's terminal status once it has one."
    )
    message: str = ""


class ServingArgs(_Record):
    """A deployment's own serving args (serving-args/<endpoint>/<deployed model id>.json): the
    serving container reads `args` at start (serving/settings.py) and applies them after the
    Model's; Vertex keeps containerSpec on the Model, so they can't ride on the deployment."""

    args: list[str]
    request_id: str
    model: str | None = None
    version: str | None = None


class Teardown(_Record):
    """Deployments the sweep undeployed from one endpoint, each as the deploy command that made it."""

    endpoint: str
    at: datetime
    deployments: list[dict[str, Any]]
    shares: dict[str, int] = Field(
        default_factory=dict,
        description="The endpoint's traffic split (deployed model id -> percent) when the first of "
        "them went: later ones are torn down one at a time, after the split has moved to them.",
    )


@dataclass(frozen=True)
class Seen:
    """What a deployment's replicas report in their activity records (activity.py), together."""

    last_request_at: datetime | None
    in_flight: int  # requests in flight on replicas that wrote within activity.STALE

    def busy(self) -> bool:
        return self.in_flight > 0
