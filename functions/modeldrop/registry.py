"""What a version folder becomes in the Model Registry: alias, labels and the serving container spec.

Pure: settings and the folder in, a ModelSpec out. Vertex version aliases must start with a
lower-case letter, and folder names may start with a digit ("1", "2024-06-01"): such a folder
gets the alias "v" + folder ("1" -> "v1"). A folder "v1" next to a folder "1" would then claim the
same alias; registration refuses the second one with a reason instead of moving the alias.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from modeldrop import labels
from modeldrop.config import Settings
from modeldrop.layout import VersionFolder
from modeldrop.naming import version_alias
from modeldrop.resources import ModelSpec

LATEST_ALIAS = "latest"
UPLOAD_LABEL = "modeldrop-upload"  # a digest of the registered files' generations
SERVING_PORT = 8080
PREDICT_ROUTE = "/predict"
HEALTH_ROUTE = "/health"
# Weights stream from GCS and the engine compiles: a large model can take most of an hour.
DEPLOYMENT_TIMEOUT_S = 2 * 3600
# Vertex's v1 `Probe` message (google/cloud/aiplatform/v1/model.proto): period_seconds "Must be less
# than timeout_seconds", timeout_seconds "Must be greater or equal to period_seconds". Odd as it
# reads, both hold here with period < timeout (docs/vertex-fidelity.md, probes row).
# Startup: probe every 15 s, allow 240 failures (an hour) before Vertex gives up on the replica.
STARTUP_PROBE = {"period_seconds": 15, "timeout_seconds": 20, "failure_threshold": 240}
# Once up: a replica that fails 4 probes 15 s apart (a minute) is restarted.
HEALTH_PROBE = {"period_seconds": 15, "timeout_seconds": 20, "failure_threshold": 4}
SHARED_MEMORY_MB = 16 * 1024  # vLLM's workers share tensors through /dev/shm


def content_digest(generations: Iterable[int]) -> str:
    """A label-safe digest of the files' generations: the same bytes uploaded once, one digest."""
    text = ",".join(str(g) for g in sorted(generations))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _serving_args(folder: VersionFolder, settings: Settings) -> list[str]:
    """`python -m serving` flags: the pinned folder, the name clients use, and what the policy allows."""
    args = ["--model", folder.uri, "--served-model-name", folder.model]
    if settings.allow_remote_code:
        args.append("--trust-remote-code")
    if settings.allow_pickle:
        args.append("--allow-unsafe-weights")
    return args


def model_spec(folder: VersionFolder, settings: Settings, digest: str) -> ModelSpec:
    """The model version to register for `folder`, served by the modeldrop serving image."""
    return ModelSpec(
        model=folder.model,
        version=folder.version,
        # Vertex moves an alias that another version holds: `latest` follows the newest upload.
        aliases=(version_alias(folder.version), LATEST_ALIAS),
        description=f"{folder.model}, registered by modeldrop from {folder.uri}",
        labels=labels.managed(
            {labels.MODEL: folder.model, labels.VERSION: folder.version, UPLOAD_LABEL: digest}
        ),
        image=settings.serving_image,
        # The container reads the pinned folder itself (weights are referenced, not copied).
        args=_serving_args(folder, settings),
        # Where the container finds its deployment's serving args and its adapters
        # (serving-args/<endpoint>/<deployed model>.json, adapters/<model>/<name>.json); with
        # AIP_ENDPOINT_ID and AIP_DEPLOYED_MODEL_ID, which Vertex sets, it names its own record.
        env={"MODELDROP_STATE_BUCKET": settings.state_bucket, "MODELDROP_MODEL": folder.model},
        port=SERVING_PORT,
        predict_route=PREDICT_ROUTE,
        health_route=HEALTH_ROUTE,
        deployment_timeout_s=DEPLOYMENT_TIMEOUT_S,
        startup_probe=dict(STARTUP_PROBE),
        health_probe=dict(HEALTH_PROBE),
        shared_memory_size_mb=SHARED_MEMORY_MB,
    )
