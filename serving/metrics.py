"""Prometheus metrics of the HTTP layer; vLLM registers its engine and token metrics in the same registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@dataclass(frozen=True)
class Metrics:
    requests: Counter
    latency: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry = REGISTRY) -> Metrics:
        return cls(
            requests=Counter(
                "modeldrop_serving_requests",
                "HTTP requests answered, by route and status code.",
                ["route", "status"],
                registry=registry,
            ),
            latency=Histogram(
                "modeldrop_serving_request_duration_seconds",
                "Time from the request's arrival to the end of its response, by route.",
                ["route"],
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
        )


_shared: Metrics | None = None


def shared() -> Metrics:
    """The process's metrics, created once (a registry refuses the same name twice)."""
    global _shared
    if _shared is None:
        _shared = Metrics.create()
    return _shared
