"""The gateway applying its decisions, with fakes at the edges: Vertex's answers, the bucket, Pub/Sub."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import pytest
from support.builders import make_env

from modeldrop.config import Settings
from modeldrop.context import Context
from modeldrop.errors import ConfigError
from modeldrop.gateway import Gateway, Hold
from modeldrop.gateway_rules import Observation, Phase, Serving, WakeNote, wake_request_id
from modeldrop.prediction import Answer, answered

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
NOT_READY = b'{"error": {"code": 429, "message": "Model is not yet ready for inference."}}'
READY = Observation("ep", True, (Serving("1", "m", 100),))


class Publisher:
    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []

    def publish_command(self, command: dict[str, Any]) -> None:
        self.commands.append(command)


class Storage:
    def __init__(self) -> None:
        self.written: dict[str, bytes] = {}
        self.names: list[str] = []  # every write, in order

    def write(self, bucket: str, name: str, data: bytes, **_: Any) -> int:
        self.written[name] = data
        self.names.append(name)
        return 1


class Prediction:
    """Vertex's answers in turn; the last one repeats."""

    def __init__(self, *answers: tuple[int, bytes]) -> None:
        self.answers = list(answers)
        self.bodies: list[bytes] = []
        self.hosts: list[str] = []  # the dedicated DNS each call went to ("" the shared host)

    def call(self, endpoint_id: str, method: str, body: bytes, dedicated_dns: str = "") -> Answer:
        self.bodies.append(body)
        self.hosts.append(dedicated_dns)
        status, data = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answered(status, data)


def gateway(
    look: Any, prediction: Prediction, clock: Any = None, **env: str
) -> tuple[Gateway, Publisher]:
    """A gateway whose clock ticks a second per reading (unless given one) and never sleeps."""
    settings = Settings.from_env(make_env(**env))
    publisher = Publisher()
    ctx = SimpleNamespace(settings=settings, publisher=publisher, storage=Storage())
    ticks = iter(float(n) for n in range(10_000))
    made = Gateway(
        cast(Context, ctx),
        prediction,
        clock=clock or (lambda: next(ticks)),
        sleep=lambda s: None,
        look=look,
    )
    return made, publisher


def test_scale_to_zeros_429_is_held_and_retried_without_a_wake() -> None:
    """Vertex answers 'not yet ready' twice: the request is held (scaling up), retried, answered; no wake."""
    vertex = Prediction((429, NOT_READY), (429, NOT_READY), (200, b'{"ok": 1}'))
    gw, publisher = gateway(lambda e: READY, vertex)
    events = list(gw.events("ep", "rawPredict", lambda seen: b"{}"))
    assert [type(e).__name__ for e in events] == ["Hold", "Hold", "Answer"]
    assert all(isinstance(e, Hold) and e.phase is Phase.SCALING_UP for e in events[:2])
    assert events[-1].status == 200  # type: ignore[union-attr]
    assert publisher.commands == []


DNS = "ep.us-central1-123456789012.prediction.vertexai.goog"


def test_a_dedicated_endpoints_requests_go_to_its_dns_from_the_cached_look() -> None:
    """Proxied to the dedicated DNS the observation carries; 3 requests, 1 look (no Vertex call per request)."""
    looks: list[str] = []

    def look(endpoint: str) -> Observation:
        looks.append(endpoint)
        return replace(READY, dedicated=True, dedicated_dns=DNS)

    vertex = Prediction((200, b"{}"))
    gw, _ = gateway(look, vertex, clock=lambda: 0.0)  # within READY_REFRESH_S: no refresh
    for _ in range(3):
        assert list(gw.events("ep", "rawPredict", lambda seen: b"{}"))[-1].status == 200  # type: ignore[union-attr]
    assert vertex.hosts == [DNS] * 3 and looks == ["ep"]


def test_a_dedicated_endpoint_without_its_dns_is_looked_at_again_and_never_sent_to_the_shared_host() -> (
    None
):
    """DNS empty at the first look: a fresh look finds it and the request goes there; empty for
    good: held (deploying) until the deadline, then 503, and nothing is sent."""
    awaiting = replace(READY, dedicated=True)
    seen = iter([awaiting, replace(awaiting, dedicated_dns=DNS)])
    vertex = Prediction((200, b"{}"))
    gw, _ = gateway(lambda e: next(seen), vertex)
    assert list(gw.events("ep", "rawPredict", lambda seen: b"{}"))[-1].status == 200  # type: ignore[union-attr]
    assert vertex.hosts == [DNS]

    never = Prediction((200, b"{}"))
    gw, _ = gateway(lambda e: awaiting, never, wake_timeout="5s")
    events = list(gw.events("ep", "rawPredict", lambda seen: b"{}"))
    assert all(isinstance(e, Hold) and e.phase is Phase.DEPLOYING for e in events[:-1])
    assert getattr(events[-1], "code", None) == 503 and never.hosts == []
    assert events[-1].body["error"]["state"] == "deploying"  # type: ignore[union-attr]


def test_a_quota_429_is_passed_through() -> None:
    """A 429 that is not scale-to-zero's is Vertex's answer to the caller."""
    gw, _ = gateway(lambda e: READY, Prediction((429, b'{"error": {"message": "Quota"}}')))
    (answer,) = list(gw.events("ep", "rawPredict", lambda seen: b"{}"))
    assert isinstance(answer, Answer) and answer.status == 429


def test_an_asleep_endpoint_is_woken_once_however_many_requests_wait() -> None:
    """50 requests at once on a sleeping endpoint: one wake published (its note written), all answered."""
    rid = wake_request_id("ep", T0)
    looks = {"n": 0}
    lock = threading.Lock()

    def look(endpoint: str) -> Observation:
        with lock:
            looks["n"] += 1
            if looks["n"] <= 3:
                return Observation("ep", True, (), "m", T0)
            if looks["n"] <= 6:
                return Observation("ep", True, (), "m", None, WakeNote(rid, T0))
            return READY

    vertex = Prediction((200, b'{"ok": 1}'))
    gw, publisher = gateway(look, vertex)
    answers: list[Any] = []

    def one() -> None:
        answers.append(list(gw.events("ep", "rawPredict", lambda seen: b"{}"))[-1])

    threads = [threading.Thread(target=one) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert [c["request_id"] for c in publisher.commands] == [rid]
    assert publisher.commands[0]["action"] == "wake"
    assert len(answers) == 50 and all(a.status == 200 for a in answers)


def test_the_model_field_becomes_the_served_model_or_the_adapter() -> None:
    """`model: <endpoint>` reaches the container as its served model name."""
    vertex = Prediction((200, b"{}"))
    gw, _ = gateway(lambda e: READY, vertex)
    list(gw.events("ep", "rawPredict", lambda seen: seen.served_model.encode()))
    assert vertex.bodies == [b"m"]


def test_past_the_deadline_a_held_request_is_refused_with_retry_after() -> None:
    """Asleep and never woken within MODELDROP_WAKE_TIMEOUT: 503, Retry-After, the state named."""
    gw, _ = gateway(lambda e: Observation("ep", True, (), "m", T0), Prediction((200, b"")),
                    wake_timeout="5s")  # fmt: skip
    last = list(gw.events("ep", "rawPredict", lambda seen: b"{}"))[-1]
    assert getattr(last, "code", None) == 503
    assert last.headers["Retry-After"] == "5"  # type: ignore[union-attr]
    assert last.body["error"]["state"] == "asleep"  # type: ignore[union-attr]


def test_the_gateways_settings_are_read_once_with_their_defaults_and_checked() -> None:
    """20 min wake timeout by default; a keep-alive or poll of 0 s is refused naming the variable."""
    settings = Settings.from_env(make_env())
    assert (settings.wake_timeout_s, settings.gateway_keepalive_s) == (1200, 10)
    assert Settings.from_env(make_env(wake_timeout="3m")).wake_timeout_s == 180
    with pytest.raises(ConfigError, match="MODELDROP_GATEWAY_KEEPALIVE"):
        Settings.from_env(make_env(gateway_keepalive="0s"))


def test_a_held_stream_gets_keep_alives_then_the_503_as_its_last_event() -> None:
    """Streamed and asleep past the deadline: 200 with SSE comments, then the error event and [DONE]."""
    import json

    asleep = Observation("ep", True, (), "m", T0)
    gw, _ = gateway(lambda e: asleep, Prediction((200, b"")), wake_timeout="5s")
    response = gw.serve("ep", "streamRawPredict", lambda seen: b"{}", stream=True)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    lines = b"".join(response.response).decode().split("\n\n")  # type: ignore[arg-type]
    assert lines[0].startswith(": asleep") and lines[-1] == ""
    assert lines[-2] == "data: [DONE]"
    error = json.loads(lines[-3].removeprefix("data: "))["error"]
    assert (error["code"], error["state"], error["retry_after_s"]) == (503, "asleep", 5)


def test_proxied_requests_count_as_activity_at_most_once_per_period() -> None:
    """Three requests in a row: one gateway activity record write for the serving deployment."""
    import json
    import time

    gw, _ = gateway(lambda e: READY, Prediction((200, b"{}")), gateway_activity_period="1h")
    for _ in range(3):
        list(gw.events("ep", "rawPredict", lambda seen: b"{}"))
    storage = cast(Storage, gw.ctx.storage)
    for _ in range(100):
        if storage.written:
            break
        time.sleep(0.01)
    time.sleep(0.1)
    assert storage.names == ["activity/ep/1/gateway.json"]
    record = json.loads(storage.written["activity/ep/1/gateway.json"])
    assert (record["endpoint_id"], record["deployed_model_id"], record["in_flight"]) == (
        "ep",
        "1",
        0,
    )


def test_an_endpoint_with_a_short_idle_ttl_gets_its_activity_records_more_often() -> None:
    """TTL 8 s under the 60 s default period: requests 3 s apart (the test clock) write a record
    at least every 2 s of that clock, so gateway-only traffic never looks idle to the sweep."""
    import time

    short = Observation("ep", True, (Serving("1", "m", 100),), idle_ttl_s=8)
    gw, _ = gateway(lambda e: short, Prediction((200, b"{}")))
    assert gw.ctx.settings.gateway_activity_period_s == 60
    for _ in range(4):  # each request reads the test clock several times: >= 2 s apart
        list(gw.events("ep", "rawPredict", lambda seen: b"{}"))
    storage = cast(Storage, gw.ctx.storage)
    long = replace(short, idle_ttl_s=1800)
    gw_long, _ = gateway(lambda e: long, Prediction((200, b"{}")))
    for _ in range(4):
        list(gw_long.events("ep", "rawPredict", lambda seen: b"{}"))
    time.sleep(0.2)
    assert len(storage.names) >= 3, storage.names
    assert len(cast(Storage, gw_long.ctx.storage).names) == 1  # the 60 s period holds


def test_models_lists_each_endpoint_and_a_ready_ones_adapters() -> None:
    """A ready endpoint with two indexed adapters and a sleeping one: three models, the adapters
    as <endpoint>:<adapter>; the sleeping endpoint's adapters are not read."""
    import json

    from modeldrop.adapters import index_name

    asleep = Observation("cold", True, model_label="m", teardown_at=T0)
    ready = Observation("ep", True, (Serving("1", "m", 100),), model_label="m")
    looks = {"ep": ready, "cold": asleep}
    gw, _ = gateway(lambda e: looks[e], Prediction((200, b"{}")))
    reads: list[str] = []

    def read(bucket: str, name: str) -> Any:
        reads.append(name)
        return SimpleNamespace(data=json.dumps({"adapters": ["chat", "sql"]}).encode())

    endpoints = [
        SimpleNamespace(id="ep", create_time=None),
        SimpleNamespace(id="cold", create_time=None),
    ]
    ctx = cast(Any, gw.ctx)
    ctx.storage.read = read
    ctx.vertex = SimpleNamespace(list_managed_endpoints=lambda _: endpoints)
    data = gw.models()["data"]
    assert [(m["id"], m["state"]) for m in data] == [
        ("ep", "ready"),
        ("ep:chat", "ready"),
        ("ep:sql", "ready"),
        ("cold", "asleep"),
    ]
    assert data[1]["parent"] == "ep"
    gw.models()
    assert reads == [index_name("m")]  # kept between listings
