"""The gateway's decisions, pure: what one request does given what is observed of its endpoint.

Facts come in (the endpoint as Vertex reports it, the sweep's teardown record, the wake a gateway
published for this sleep and how it ended, how long the request has waited); a Decision comes out.
`gateway.py` applies it. Nothing here reads a clock or a bucket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

WAKE_PREFIX = "gateway-wake-"
# Vertex's answer to a prediction that reaches a scale-to-zero model at zero replicas (HTTP 429):
# it starts a scale-up by itself; the request has to be sent again once a replica is up.
SCALE_UP_TEXT = "not yet ready for inference"
_ENDPOINT = re.compile(r"^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[1-9][0-9]{0,8})$")
_ADAPTER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Failed wakes: every terminal status but these.
_WOKEN = frozenset({"ready", "succeeded"})


class Phase(StrEnum):
    """Where an endpoint stands, as the gateway tells its callers (the `state` of its errors)."""

    READY = "ready"  # a deployment with traffic: requests are proxied
    ASLEEP = "asleep"  # torn down by the sweep, no wake sent yet for this sleep
    WAKING = "waking"  # a wake for this sleep is published or under way (the gateway's or anyone's)
    DEPLOYING = "deploying"  # a deploy someone sent is queued or under way on it
    SCALING_UP = "scaling_up"  # Vertex's scale-to-zero is starting a replica (it answered 429)
    WAKE_FAILED = "wake_failed"  # the wake for this sleep ended without a deployment
    EMPTY = "empty"  # the endpoint exists, serves nothing and nothing was torn down
    UNKNOWN = "unknown"  # no such endpoint


class Action(StrEnum):
    PROXY = "proxy"  # send the request to Vertex now
    WAKE = "wake"  # publish this sleep's wake (once), then hold
    HOLD = "hold"  # wait and look again
    NOT_FOUND = "not_found"  # 404
    CONFLICT = "conflict"  # 409: nothing to wake
    FAILED = "failed"  # 502: the wake ended without bringing anything back
    GIVE_UP = "give_up"  # 503 + Retry-After: the wake deadline passed


@dataclass(frozen=True)
class Serving:
    """A deployment that takes traffic."""

    deployed_model_id: str
    model: str | None
    percent: int


@dataclass(frozen=True)
class WakeNote:
    """The wake a gateway published for one sleep (wakes/<endpoint>.json) and how it ended."""

    request_id: str
    published_at: datetime
    outcome: str | None = None  # the wake request's terminal status once it has one
    message: str = ""


@dataclass(frozen=True)
class DeployNote:
    """The latest deploy or wake started or queued on the endpoint (deploys/<endpoint>.json), by
    anyone: a user's `modeldrop deploy` or `wake`, a deploy policy, a gateway's wake."""

    request_id: str
    action: str
    at: datetime
    outcome: str | None = None  # its terminal status once reported
    message: str = ""


@dataclass(frozen=True)
class Observation:
    """What the gateway knows of one endpoint at one moment."""

    endpoint: str
    exists: bool
    serving: tuple[Serving, ...] = ()
    model_label: str | None = None
    teardown_at: datetime | None = None  # the sweep's teardown record, if there is one
    wake: WakeNote | None = None
    deploy: DeployNote | None = None
    idle_ttl_s: int | None = None  # the endpoint's idle TTL label (0: never torn down for idleness)
    dedicated: bool = False  # Endpoint.dedicated_endpoint_enabled: served on its own DNS only
    dedicated_dns: str = ""  # Endpoint.dedicated_endpoint_dns, "" until Vertex publishes it

    @property
    def awaiting_dns(self) -> bool:
        """Dedicated, but Vertex has not published its DNS yet: the shared host would refuse the
        request (docs/vertex-fidelity.md row 82), and there is nowhere else to send it."""
        return self.dedicated and not self.dedicated_dns

    @property
    def routable(self) -> bool:
        """A request can be proxied now: a deployment takes traffic and its host is known."""
        return bool(self.serving) and not self.awaiting_dns

    @property
    def served_model(self) -> str:
        """The name the endpoint's container answers to: its main deployment's model."""
        if self.serving:
            main = max(self.serving, key=lambda s: (s.percent, s.deployed_model_id))
            if main.model:
                return main.model
        return self.model_label or self.endpoint


@dataclass(frozen=True)
class Decision:
    action: Action
    phase: Phase
    reason: str = ""
    wake_request_id: str | None = None


def wake_request_id(endpoint: str, teardown_at: datetime) -> str:
    """One request id per sleep: every gateway instance derives the same one from the teardown
    record, so their publications of it are one command to the control plane (request_id dedupe)."""
    return f"{WAKE_PREFIX}{endpoint}-{teardown_at:%Y%m%dT%H%M%S%f}"


def decide(seen: Observation, waited_s: float, timeout_s: float) -> Decision:
    """What a request for `seen.endpoint` does after waiting `waited_s` (0 when it arrives)."""
    name = seen.endpoint
    if seen.serving and seen.awaiting_dns:
        # Transient (the SDK re-reads an endpoint whose DNS is empty): held like a deploy.
        if waited_s >= timeout_s:
            return _give_up(name, Phase.DEPLOYING, timeout_s)
        reason = f"Vertex has not published the dedicated DNS of {name} yet"
        return Decision(Action.HOLD, Phase.DEPLOYING, reason)
    if seen.serving:
        return Decision(Action.PROXY, Phase.READY)
    deploy = _current(seen.deploy, seen.teardown_at)
    if deploy is not None and deploy.outcome is None:
        # Someone's deploy or wake is under way (or queued): held like a wake of our own, and no
        # wake of ours on top of it (it would queue behind and find nothing left to wake).
        phase = Phase.WAKING if deploy.action == "wake" else Phase.DEPLOYING
        if waited_s >= timeout_s:
            return _give_up(name, phase, timeout_s)
        reason = f"{deploy.action} {deploy.request_id} of {name} is under way"
        return Decision(Action.HOLD, phase, reason, deploy.request_id)
    if not seen.exists and seen.teardown_at is None:
        return Decision(Action.NOT_FOUND, Phase.UNKNOWN, f"no endpoint named {name!r}")
    if deploy is not None and deploy.outcome not in _WOKEN and waited_s > 0:
        # This request was held for that deploy (it was under way at an earlier look).
        reason = f"the {deploy.action} {deploy.request_id} of {name} ended {deploy.outcome}"
        return Decision(
            Action.FAILED, Phase.WAKE_FAILED, f"{reason}: {deploy.message}".rstrip(": ")
        )
    wanted = wake_request_id(name, seen.teardown_at) if seen.teardown_at else None
    note = seen.wake
    if note is not None and note.outcome is not None and note.outcome not in _WOKEN:
        if wanted is None or note.request_id == wanted:
            reason = f"the wake {note.request_id} of {name} ended {note.outcome}"
            return Decision(
                Action.FAILED, Phase.WAKE_FAILED, f"{reason}: {note.message}".rstrip(": ")
            )
    if wanted is not None:
        waking = note is not None and note.request_id == wanted
        phase = Phase.WAKING if waking else Phase.ASLEEP
        if waited_s >= timeout_s:
            return _give_up(name, phase, timeout_s)
        if waking:
            return Decision(Action.HOLD, phase, f"waking {name}", wanted)
        return Decision(Action.WAKE, phase, f"{name} is asleep: waking it", wanted)
    if note is not None and note.outcome is None:
        # The wake took the teardown record and its deploy is under way.
        if waited_s >= timeout_s:
            return _give_up(name, Phase.WAKING, timeout_s)
        return Decision(Action.HOLD, Phase.WAKING, f"waking {name}", note.request_id)
    last = ""
    if deploy is not None and deploy.outcome not in _WOKEN:
        last = f" (its last {deploy.action}, {deploy.request_id}, ended {deploy.outcome})"
    return Decision(
        Action.CONFLICT,
        Phase.EMPTY,
        f"endpoint {name} serves nothing, nothing was torn down to wake and nothing is being "
        f"deployed{last}: send a deploy command",
    )


def _current(deploy: DeployNote | None, teardown_at: datetime | None) -> DeployNote | None:
    """The deploy note, unless the sweep tore the endpoint down after it started: the sweep acts
    on an endpoint only when no operation runs on it, so such a note is an old one."""
    if deploy is None or (teardown_at is not None and deploy.at < teardown_at):
        return None
    return deploy


def _give_up(name: str, phase: Phase, timeout_s: float) -> Decision:
    return Decision(
        Action.GIVE_UP, phase, f"{name} is still {phase.value} after {timeout_s:g}s: retry later"
    )


def is_scale_up(status: int, body: str) -> bool:
    """Vertex's scale-to-zero answer (429, the model has no replica yet), not a quota 429."""
    return status == 429 and SCALE_UP_TEXT in body


def backoff_s(attempt: int, cap_s: float) -> float:
    """How long to wait before sending a request again that scale-to-zero refused `attempt` times."""
    return float(min(cap_s, 0.5 * 2 ** min(attempt, 16)))


@dataclass(frozen=True)
class Target:
    """Which endpoint a request's `model` names, and the adapter the container is asked for."""

    endpoint: str
    adapter: str | None


def target(model: object) -> Target:
    """`<endpoint>` or `<endpoint>:<adapter>`; ValueError says what is wrong."""
    if not isinstance(model, str) or not model:
        raise ValueError('"model" must name an endpoint: "<endpoint>" or "<endpoint>:<adapter>"')
    endpoint, colon, adapter = model.partition(":")
    if not _ENDPOINT.fullmatch(endpoint):
        raise ValueError(f'"model": {endpoint!r} is not an endpoint id ([a-z][a-z0-9-]*, <= 63)')
    if colon and not _ADAPTER.fullmatch(adapter):
        raise ValueError(f'"model": {adapter!r} is not an adapter name')
    return Target(endpoint, adapter if colon else None)


# The gateway's activity records come at most once per period: a period at most this share of the
# endpoint's idle TTL leaves the sweep three more records' worth of slack before it could judge an
# endpoint idle that the gateway keeps busy (a write late or lost, the sweep's own tick).
ACTIVITY_SHARE_OF_TTL = 0.25
MIN_ACTIVITY_PERIOD_S = 1.0


def activity_period_s(configured_s: float, idle_ttl_s: int | None) -> float:
    """How often the gateway writes an endpoint's activity record: the configured period, shortened
    to a quarter of the endpoint's idle TTL (a 20 s TTL under the 60 s default would otherwise see
    gateway-only traffic as idle), never below a second."""
    if not idle_ttl_s:
        return configured_s
    return max(MIN_ACTIVITY_PERIOD_S, min(configured_s, idle_ttl_s * ACTIVITY_SHARE_OF_TTL))


def retry_after_s(timeout_s: float) -> int:
    """What a 503 tells the caller to wait: a tenth of the wake deadline, within 5 s and 60 s."""
    return int(min(60.0, max(5.0, timeout_s / 10)))
