"""Settings read once from the environment into a frozen object, naming any missing variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from modeldrop.durations import parse_duration
from modeldrop.errors import ConfigError

PREFIX = "MODELDROP_"


@dataclass(frozen=True)
class Settings:
    """What the functions need to know about their world. Every field maps to one MODELDROP_* variable."""

    project: str
    region: str
    weights_bucket: str
    state_bucket: str
    commands_topic: str
    results_topic: str
    serving_image: str
    serving_service_account: str | None = None
    # http://127.0.0.1:PORT for the local Vertex emulator; None means the real regional endpoint.
    vertex_api_endpoint: str | None = None
    monitoring_api_endpoint: str | None = None
    default_idle_ttl_s: int = 30 * 60
    deploy_grace_s: int = 15 * 60
    max_event_age_s: int = 24 * 3600
    # How long an incomplete upload may sit without a new file before it is rejected as abandoned.
    upload_wait_s: int = 15 * 60
    # How late Cloud Monitoring's prediction_count arrives (sampled every 60 s, then ingested within
    # minutes): the latest window counts as unknown, never as idle.
    metrics_delay_s: int = 5 * 60
    allow_pickle: bool = False
    allow_remote_code: bool = False
    delete_empty_endpoints: bool = False
    # A subscription on the dead-letter topic that the sweep drains: each command there gets its
    # `failed` result. None: dead letters wait for a person.
    dead_letter_subscription: str | None = None
    # The gateway: how long a request is held through a wake before a 503 (Retry-After), how often
    # a held stream gets an SSE keep-alive, how often it looks at the endpoint again, and how often
    # it writes an endpoint's activity record (at most once per endpoint per period).
    wake_timeout_s: int = 20 * 60
    gateway_keepalive_s: int = 10
    gateway_poll_s: int = 2
    gateway_activity_period_s: int = 60

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        missing = [PREFIX + name.upper() for name in REQUIRED if not env.get(PREFIX + name.upper())]
        if missing:
            raise ConfigError(f"missing environment variable(s): {', '.join(missing)}")

        def get(name: str) -> str | None:
            return env.get(PREFIX + name.upper()) or None

        try:
            return cls(
                **{name: get(name) for name in REQUIRED},  # type: ignore[arg-type]
                serving_service_account=get("serving_service_account"),
                vertex_api_endpoint=get("vertex_api_endpoint"),
                monitoring_api_endpoint=get("monitoring_api_endpoint"),
                default_idle_ttl_s=_duration(env, "default_idle_ttl", cls.default_idle_ttl_s),
                deploy_grace_s=_duration(env, "deploy_grace", cls.deploy_grace_s),
                max_event_age_s=_duration(env, "max_event_age", cls.max_event_age_s),
                upload_wait_s=_duration(env, "upload_wait", cls.upload_wait_s),
                metrics_delay_s=_duration(env, "metrics_delay", cls.metrics_delay_s),
                allow_pickle=_flag(env, "allow_pickle"),
                allow_remote_code=_flag(env, "allow_remote_code"),
                delete_empty_endpoints=_flag(env, "delete_empty_endpoints"),
                dead_letter_subscription=get("dead_letter_subscription"),
                wake_timeout_s=_duration(env, "wake_timeout", cls.wake_timeout_s),
                gateway_keepalive_s=_positive(env, "gateway_keepalive", cls.gateway_keepalive_s),
                gateway_poll_s=_positive(env, "gateway_poll", cls.gateway_poll_s),
                gateway_activity_period_s=_duration(
                    env, "gateway_activity_period", cls.gateway_activity_period_s
                ),
            )
        except ValueError as error:
            raise ConfigError(str(error)) from error


REQUIRED = (
    "project",
    "region",
    "weights_bucket",
    "state_bucket",
    "commands_topic",
    "results_topic",
    "serving_image",
)
OPTIONAL = (
    "serving_service_account",
    "vertex_api_endpoint",
    "monitoring_api_endpoint",
    "default_idle_ttl",
    "deploy_grace",
    "max_event_age",
    "upload_wait",
    "metrics_delay",
    "allow_pickle",
    "allow_remote_code",
    "delete_empty_endpoints",
    "dead_letter_subscription",
    "wake_timeout",
    "gateway_keepalive",
    "gateway_poll",
    "gateway_activity_period",
)
VARIABLES = tuple(PREFIX + name.upper() for name in REQUIRED + OPTIONAL)


def pubsub_api_endpoint(env: Mapping[str, str] = os.environ) -> str:
    """Where Pub/Sub's REST API is: the emulator named by PUBSUB_EMULATOR_HOST (as the SDKs read it), else Google's."""
    host = env.get("PUBSUB_EMULATOR_HOST")
    return f"http://{host}" if host else "https://pubsub.googleapis.com"


def _duration(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(PREFIX + name.upper())
    if not raw:
        return default
    try:
        return parse_duration(raw)
    except ValueError as error:
        raise ValueError(f"{PREFIX + name.upper()}: {error}") from error


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    seconds = _duration(env, name, default)
    if seconds < 1:
        raise ValueError(f"{PREFIX + name.upper()} must be at least 1s")
    return seconds


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(PREFIX + name.upper()) or "false").strip().lower()
    if raw in ("1", "true", "yes"):
        return True
    if raw in ("0", "false", "no", ""):
        return False
    raise ValueError(f"{PREFIX + name.upper()} must be true or false, got {raw!r}")
