"""One change at a time per endpoint, as Google's SDK makes them: a request's steps are recorded
together and started one by one, each when the one before it has ended.

`Endpoint.undeploy_all` in google-cloud-aiplatform undeploys one deployed model at a time, lowest
traffic first, waiting for each; `UndeployModelRequest.traffic_split` must give the model being
undeployed no traffic, and a split may only name models that are deployed — so a second step
computed before the first one ended could name a model that is on its way out. Each step's split
is therefore computed from the endpoint as Vertex shows it when the step starts. Sources and the
emulator's play of each: docs/vertex-fidelity.md rows 20 (a split names only deployed ids), 23 (undeploy_all) and 37 (a second
operation while one runs).
"""

from __future__ import annotations

from datetime import datetime

from modeldrop import placing, traffic
from modeldrop.context import Context
from modeldrop.errors import PermanentError, StockoutError
from modeldrop.records import OperationRecord
from modeldrop.resources import DeploymentSpec, Endpoint

DEPLOYS = ("deploy", "wake")


def plan(
    ctx: Context, now: datetime, steps: list[OperationRecord], endpoint: Endpoint
) -> str | None:
    """Record every step (the later ones deferred), then start the first; its operation name."""
    steps = [s.model_copy(update={"part": i, "parts": len(steps)}) for i, s in enumerate(steps)]
    for step in steps[1:]:
        ctx.state.record_operation(step.model_copy(update={"deferred": True}))
    try:
        return start(ctx, now, steps[0], endpoint)
    except PermanentError:
        # Refused before anything started (quota, bad input): the request ends failed, and no
        # step of it may keep the endpoint busy.
        for step in steps:
            ctx.state.forget_operation(step)
            if step.action in DEPLOYS:
                placing.forget_serving_args(ctx, step)
        raise


def start(
    ctx: Context, now: datetime, step: OperationRecord, endpoint: Endpoint | None = None
) -> str | None:
    """Start one step from the endpoint's current state; None when its effect is already there.

    The step is recorded as started (with no operation yet) before Vertex is called: a function
    that dies in between leaves an intent the sweep judges by its effect.
    """
    endpoint = endpoint or ctx.vertex.endpoint(step.endpoint)
    live = step.model_copy(update={"deferred": False, "started_at": now})
    ctx.state.record_operation(live)
    deployed = {d.id for d in endpoint.deployments} if endpoint else set()
    if step.action in DEPLOYS:
        spec = DeploymentSpec(**step.details["spec"])
        if endpoint is None:
            raise PermanentError(f"endpoint {step.endpoint} was deleted before this deploy started")
        if spec.deployed_model_id in deployed:
            return None
        current = {d: endpoint.traffic_split.get(d, 0) for d in deployed}
        split = traffic.with_new(current, spec.traffic_percent)
        try:
            name = ctx.vertex.deploy(endpoint.id, spec, split)
        except StockoutError as error:
            # Refused at the request (most stockouts show on the operation: the sweep follows
            # those): the same step goes on to its next placement at once.
            following = placing.next_placement(ctx, live, str(error))
            if following is None:
                raise PermanentError(
                    f"every placement was refused on {endpoint.id}",
                    [*placing.refusals(live), str(error)],
                ) from error
            return start(ctx, now, following, endpoint)
    else:
        if endpoint is None or step.deployed_model_id not in deployed:
            return None  # gone already: the intent is judged done by its effect
        # Vertex refuses to undeploy a model that keeps traffic: its share goes to the others.
        split = traffic.without(endpoint.traffic_split, {step.deployed_model_id}, deployed)
        name = ctx.vertex.undeploy(endpoint.id, step.deployed_model_id or "", split)
    ctx.state.record_operation(live.model_copy(update={"operation": name}))
    return name
