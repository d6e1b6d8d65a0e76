"""How faithfully the emulator plays Vertex AI: one frozen value of rules, from a preset plus overrides.

`legacy` is the emulator as it was (instant operations, forgiving validation, instant metrics);
`faithful` turns every rule of docs/vertex-fidelity.md on, with modelled durations scaled by
`time_scale`. Where Google documents nothing, a rule has several plausible variants (marked
`assumed` in the table) and an override picks one, so the control plane can be tested under each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

PRESETS = ("legacy", "faithful")
SAMPLE_PERIOD_S = (
    60  # Vertex's metrics are sampled every 60 s (the metric descriptors' samplePeriod)
)
# The routes Monitoring's prediction_count may count; which ones Vertex counts is not documented.
ROUTES = ("predict", "rawPredict", "streamRawPredict", "chatCompletions", "completions")


@dataclass(frozen=True)
class Durations:
    """Modelled durations of operations at time scale 1, in seconds (observed ranges, not documented)."""

    create_endpoint: float = 0.0
    delete_endpoint: float = 0.0
    upload_model: float = 0.0
    delete_model: float = 0.0
    deploy_cpu: float = 0.0
    deploy_gpu: float = 0.0
    undeploy: float = 0.0
    mutate: float = 0.0
    # A model at zero replicas (v1beta1 scale-to-zero) takes this long to serve again; 0 = the
    # modelled deploy time of its machine (deploy_cpu or deploy_gpu), as the brief of issue 10 says.
    scale_up: float = 0.0


# python-aiplatform #3329: a 7B vLLM deploy outran the SDK's 900 s timeout; CPU deploys of custom
# containers take several minutes too. Endpoint and model creation take seconds.
REALISTIC = Durations(
    create_endpoint=5.0,
    delete_endpoint=5.0,
    upload_model=20.0,
    delete_model=5.0,
    deploy_cpu=600.0,
    deploy_gpu=1200.0,
    undeploy=120.0,
    mutate=300.0,
)


@dataclass(frozen=True)
class Fidelity:
    """Every rule the emulator plays; the field names are the keys of `--rule KEY=VALUE`."""

    preset: str = "legacy"
    time_scale: float = 1.0
    durations: Durations = field(default_factory=Durations)
    # Strict request checks (endpoint ids, display names, probes, machine/accelerator combos).
    strict_requests: bool = False
    # Probe rules (period < timeout after defaults, minimums): its own switch, so a caller can
    # see what else fails while its probes are being fixed.
    strict_probes: bool = False
    # Probe.period_seconds == timeout_seconds: the proto says both "<" and ">=" (assumed).
    probe_equal: str = "refuse"  # refuse | accept
    # Label keys and values: the proto says "no longer than 64", GCP's label rules say 63 (assumed).
    label_max: int = 63
    # Model and version labels merged on read (UpdateModelRequest comment).
    merged_labels: bool = False
    # When a model label and a version label share a key, which one a read shows (assumed).
    label_winner: str = "version"  # version | model
    # An undeployed model stays listed, with its traffic, until its operation ends.
    inflight_undeploy: bool = False
    # A deploying model is listed (0 available replicas) before its operation ends (assumed).
    deploying_listed: bool = False
    # A second deploy/undeploy/mutate while one runs on the endpoint (assumed).
    concurrent_ops: str = "allow"  # allow | refuse
    # Endpoints and models become visible when their create/upload operation ends (assumed).
    created_when_done: bool = False
    # A deploy naming a deployed-model id already on the endpoint (assumed).
    same_deployed_id: str = "ALREADY_EXISTS"  # ALREADY_EXISTS | INVALID_ARGUMENT
    # Cloud Monitoring: 60 s samples, visible only after the ingestion delay (scaled).
    metric_sampling: bool = False
    ingest_delay_s: float = 0.0
    counted_routes: frozenset[str] = frozenset(ROUTES)
    # Predict request size limit (bytes) checked before the container sees it; 0 = none.
    predict_max_bytes: int = 0
    # Every JSON body the emulator parses: nesting depth and size limits (both presets).
    json_max_depth: int = 100
    json_max_bytes: int = 32 * 1024 * 1024
    # Stockout reported on the operation after node provisioning (assumed timing), quota at once.
    quota_gpus: Mapping[str, int] = field(default_factory=dict)
    # Where a stockout shows (assumed: Compute Engine documents the words, not where Vertex puts
    # them): on the deploy operation, or as the DeployModel request's own 429 RESOURCE_EXHAUSTED.
    stockout_at: str = "operation"  # operation | request
    # v1beta1 scale-to-zero (assumed limits: Google's Preview page is the source, not a proto):
    # a scale-to-zero model is the only model on its endpoint, on a dedicated endpoint only.
    stz_single_model: bool = False
    stz_dedicated_only: bool = False
    # minReplicaCount 0 without initialReplicaCount: the proto says it "should be larger than
    # zero" (refuse) or Vertex fills 1 (assumed).
    stz_initial: str = "one"  # required | one
    # A ScaleToZeroSpec period left unset (assumed: Google documents no default), before scaling.
    stz_default_period_s: float = 3600.0
    # A dedicated endpoint answers predictions on its dedicated DNS only (endpoint.proto says so,
    # both presets); the shared host's refusal, 400 FAILED_PRECONDITION, is assumed. Off: a
    # Vertex that still answers on the shared host.
    dedicated_dns_only: bool = True

    def seconds(self, name: str) -> float:
        """The modelled duration `name` (a Durations field), scaled."""
        return float(getattr(self.durations, name)) * self.time_scale

    @property
    def ingest_delay_scaled_s(self) -> float:
        return self.ingest_delay_s * self.time_scale

    @property
    def metrics_delay_s(self) -> int:
        """How old a prediction can be and still be missing from Monitoring: its 60 s sample must
        close (sampling is not scaled: aligned points are whole minutes), then the ingestion
        delay, scaled; rounded up. The control plane's MODELDROP_METRICS_DELAY against this emulator."""
        if not self.metric_sampling:
            return 0  # counts show at once (local.vertex.monitoring.PredictionCounts.visible)
        return math.ceil(SAMPLE_PERIOD_S + self.ingest_delay_scaled_s) + 1  # +1: whole seconds


FAITHFUL = Fidelity(
    preset="faithful",
    durations=REALISTIC,
    strict_requests=True,
    strict_probes=True,
    merged_labels=True,
    inflight_undeploy=True,
    concurrent_ops="refuse",
    created_when_done=True,
    metric_sampling=True,
    ingest_delay_s=180.0,
    counted_routes=frozenset({"predict", "rawPredict"}),
    # Vertex's online prediction request limit for public endpoints: 1.5 MB.
    predict_max_bytes=1_572_864,
    stz_single_model=True,
    stz_dedicated_only=True,
    stz_initial="required",
)

_CHOICES = {
    "probe_equal": ("refuse", "accept"),
    "concurrent_ops": ("allow", "refuse"),
    "label_winner": ("version", "model"),
    "same_deployed_id": ("ALREADY_EXISTS", "INVALID_ARGUMENT"),
    "stz_initial": ("required", "one"),
    "stockout_at": ("operation", "request"),
}


def _bool(text: str) -> bool:
    if text.lower() in {"1", "true", "on", "yes"}:
        return True
    if text.lower() in {"0", "false", "off", "no"}:
        return False
    raise ValueError(f"expected on/off, got {text!r}")


def _value(name: str, text: str, current: Any) -> Any:
    if name in _CHOICES:
        if text not in _CHOICES[name]:
            raise ValueError(f"{name} must be one of {', '.join(_CHOICES[name])}, not {text!r}")
        return text
    if name == "counted_routes":
        routes = frozenset(r for r in text.split(",") if r)
        unknown = routes - set(ROUTES)
        if unknown:
            raise ValueError(f"unknown routes {sorted(unknown)}; routes: {', '.join(ROUTES)}")
        return routes
    if name == "quota_gpus":
        quota: dict[str, int] = {}
        for part in filter(None, text.split(",")):
            accelerator, _, count = part.partition(":")
            quota[accelerator] = int(count)
        return quota
    if isinstance(current, bool):
        return _bool(text)
    if isinstance(current, int):
        return int(text)
    if isinstance(current, float):
        return float(text)
    raise ValueError(f"{name} cannot be set from the command line")


def build(preset: str, time_scale: float | None, rules: Mapping[str, str]) -> Fidelity:
    """The preset with `rules` (KEY -> text) applied; ValueError naming a bad key or value."""
    if preset not in PRESETS:
        raise ValueError(f"--fidelity must be one of {', '.join(PRESETS)}, not {preset!r}")
    base = FAITHFUL if preset == "faithful" else Fidelity()
    if time_scale is not None:
        if time_scale < 0:
            raise ValueError("--time-scale must not be negative")
        base = replace(base, time_scale=time_scale)
    known = {f.name: f for f in fields(Fidelity)} | {
        f"duration.{f.name}": f for f in fields(Durations)
    }
    changes: dict[str, Any] = {}
    durations = base.durations
    for key, text in rules.items():
        if key not in known or key in {"preset", "time_scale", "durations"}:
            raise ValueError(f"unknown rule {key!r}; rules: {', '.join(sorted(known))}")
        if key.startswith("duration."):
            durations = replace(durations, **{key.removeprefix("duration."): float(text)})
        else:
            changes[key] = _value(key, text, getattr(base, key))
    return replace(base, durations=durations, **changes)
