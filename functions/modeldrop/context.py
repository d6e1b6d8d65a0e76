"""Settings and adapters, built once per process on first use (never at import: cold start)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from modeldrop.config import Settings
from modeldrop.monitoring import CloudMonitoring, Monitoring
from modeldrop.pubsub import DeadLetters, Publisher, PubSubDeadLetters, PubSubPublisher
from modeldrop.resources import Vertex
from modeldrop.state import StateStore
from modeldrop.storage import GcsStorage, Storage
from modeldrop.validation import Policy
from modeldrop.vertex import GapicVertex


@dataclass(frozen=True)
class Context:
    """Everything a handler touches; tests build one from fakes."""

    settings: Settings
    vertex: Vertex
    storage: Storage
    publisher: Publisher
    monitoring: Monitoring
    state: StateStore
    dead_letters: DeadLetters | None = None

    @property
    def policy(self) -> Policy:
        return Policy(
            allow_pickle=self.settings.allow_pickle,
            allow_remote_code=self.settings.allow_remote_code,
        )


def build(settings: Settings) -> Context:
    storage = GcsStorage(settings.project)
    return Context(
        settings=settings,
        vertex=GapicVertex(settings.project, settings.region, settings.vertex_api_endpoint),
        storage=storage,
        publisher=PubSubPublisher(
            settings.project, settings.results_topic, settings.commands_topic
        ),
        monitoring=CloudMonitoring(settings.project, settings.monitoring_api_endpoint),
        state=StateStore(storage, settings.state_bucket),
        dead_letters=PubSubDeadLetters(settings.project, settings.dead_letter_subscription)
        if settings.dead_letter_subscription
        else None,
    )


@cache
def context() -> Context:
    """The process's context: settings read once from the environment, adapters built lazily."""
    return build(Settings.from_env())
