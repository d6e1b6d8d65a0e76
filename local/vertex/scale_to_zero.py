"""v1beta1 scale-to-zero rules: which requests may ask for zero replicas, checked as Vertex checks them."""

from __future__ import annotations

from local.vertex import versions
from local.vertex.errors import invalid, precondition
from local.vertex.fidelity import Fidelity
from local.vertex.resources import DedicatedResources, Endpoint, ScaleToZeroSpec

# v1beta1 DedicatedResources.ScaleToZeroSpec: both periods "[MinValue=300] (5 minutes)
# [MaxValue=28800] (8 hours)"; the SDK's preview Endpoint._validate_deploy_args checks the same.
MIN_PERIOD_S = 300.0
MAX_PERIOD_S = 28800.0
# The answer of a prediction that reaches a model at zero replicas (observed, HTTP 429).
NOT_READY = (
    "Model is not yet ready for inference. Please wait while model completes scale-up from "
    "zero, then try your request again."
)
_V1BETA1_ONLY = (
    ("initial_replica_count", "initialReplicaCount"),
    ("scale_to_zero_spec", "scaleToZeroSpec"),
)


def period_s(text: str | None, field: str, default_s: float) -> float:
    """A ScaleToZeroSpec Duration ("300s") in seconds, within 5 minutes and 8 hours."""
    if text is None:
        return default_s
    try:
        seconds = float(text.removesuffix("s"))
    except ValueError as error:
        raise invalid(f"scale_to_zero_spec.{field} must look like '300s', not {text!r}.") from error
    if not MIN_PERIOD_S <= seconds <= MAX_PERIOD_S:
        raise invalid(
            f"scale_to_zero_spec.{field} must be between 300s (5 minutes) and 28800s (8 hours), "
            f"not {text}."
        )
    return seconds


def check_fields(resources: DedicatedResources, version: str) -> None:
    """A v1 request naming v1beta1's scale-to-zero fields is refused as an unknown field."""
    if version != versions.V1:
        return
    for attribute, wire in _V1BETA1_ONLY:
        if getattr(resources, attribute) is not None:
            # Google's JSON transcoding answers a field its version does not have this way.
            raise invalid(
                f'Invalid JSON payload received. Unknown name "{wire}" at '
                "'deployed_model.dedicated_resources': Cannot find field."
            )


def check_replicas(resources: DedicatedResources, version: str, fidelity: Fidelity) -> None:
    """Replica counts as the request's version takes them (max defaulted to min before)."""
    check_fields(resources, version)
    if resources.min_replica_count < 0 or (
        resources.min_replica_count == 0 and version == versions.V1
    ):
        raise invalid("dedicated_resources.min_replica_count must be at least 1.")
    if resources.min_replica_count > 0:
        # DedicatedResources.initial_replica_count: "should not be set" unless min is 0; the SDK
        # refuses the spec too ("cannot be set for non-STZ models").
        if resources.initial_replica_count or resources.scale_to_zero_spec is not None:
            raise invalid(
                "dedicated_resources.initial_replica_count and scale_to_zero_spec can only be set "
                "when min_replica_count is 0 (scale-to-zero)."
            )
        return
    if not resources.initial_replica_count or resources.initial_replica_count < 0:
        if fidelity.stz_initial == "required":
            raise invalid(
                "dedicated_resources.initial_replica_count must be larger than 0 when "
                "min_replica_count is 0 (scale-to-zero)."
            )
        resources.initial_replica_count = 1
    if resources.initial_replica_count > resources.max_replica_count:
        raise invalid(
            f"dedicated_resources.initial_replica_count ({resources.initial_replica_count}) must "
            f"not be greater than max_replica_count ({resources.max_replica_count})."
        )
    spec = resources.scale_to_zero_spec or ScaleToZeroSpec()
    default = fidelity.stz_default_period_s
    period_s(spec.min_scaleup_period, "min_scaleup_period", default)
    period_s(spec.idle_scaledown_period, "idle_scaledown_period", default)


def check_endpoint(
    endpoint: Endpoint, others: list[str], resources: DedicatedResources, fidelity: Fidelity
) -> None:
    """The Preview's limits on where a scale-to-zero model may go (assumed; rules turn them off)."""
    name = endpoint.name
    zeroable = [
        m.id
        for m in endpoint.deployed_models
        if m.dedicated_resources is not None and m.dedicated_resources.scales_to_zero
    ]
    if resources.scales_to_zero:
        if fidelity.stz_dedicated_only and not endpoint.dedicated_endpoint_enabled:
            raise precondition(
                f"Scale-to-zero deployments need a dedicated endpoint; {name} was not created "
                "with dedicatedEndpointEnabled."
            )
        if fidelity.stz_single_model and others:
            raise precondition(
                f"A scale-to-zero model must be the only model on its endpoint; {name} has "
                f"deployed models {sorted(others)}."
            )
    elif fidelity.stz_single_model and zeroable:
        raise precondition(
            f"Endpoint {name} serves scale-to-zero model {zeroable[0]}, which must be the only "
            "model on it."
        )
