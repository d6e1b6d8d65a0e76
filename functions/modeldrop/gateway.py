"""The front door: OpenAI-compatible and Vertex predict requests routed to endpoints by name.

A ready endpoint is proxied (streams chunk by chunk, errors with their status). One that sleeps
is woken once per sleep and every request is held: a stream gets SSE keep-alives with the wake's
progress, a plain request waits; both are answered once a deployment serves, or past the wake
deadline with 503 and Retry-After. Decisions are gateway_rules'; this module applies them.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from flask import Request, Response

from modeldrop import adapters, gateway_http, gateway_rules, gateway_state
from modeldrop.context import Context, context
from modeldrop.errors import ModeldropError
from modeldrop.gateway_effects import Effects
from modeldrop.gateway_http import BadRequest, Failure
from modeldrop.gateway_rules import Action, Decision, Observation, Phase
from modeldrop.labels import MANAGED_FILTER
from modeldrop.prediction import Answer, Prediction, VertexPrediction, answered

log = logging.getLogger(__name__)
_PREDICT = re.compile(
    r"^/v1/(?:projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/)?endpoints/(?P<endpoint>[^/:]+):predict$"
)
BACKOFF_CAP_S = 10.0
ADAPTERS_KEPT_S = 30.0  # how long /v1/models reuses a model's adapter index


@dataclass(frozen=True)
class Hold:
    """The request is held: where its endpoint stands, for keep-alives."""

    phase: Phase
    waited_s: float
    reason: str


Outcome = Answer | Failure
Event = Hold | Outcome


class Gateway:
    """One per process: the observations, wakes and activity records its requests share."""

    def __init__(
        self,
        ctx: Context,
        prediction: Prediction | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        look: Callable[[str], Observation] | None = None,
    ) -> None:
        s = ctx.settings
        self.ctx = ctx
        self.prediction = prediction or VertexPrediction(s.project, s.region, s.vertex_api_endpoint)
        self.observer = gateway_state.Observer(
            look or (lambda endpoint: gateway_state.observe(ctx, endpoint)), s.gateway_poll_s, clock
        )
        self._clock, self._sleep = clock, sleep
        self.effects = Effects(ctx, self.observer, clock)
        self._adapter_names: dict[str, tuple[float, list[str]]] = {}

    # Routes -----------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        path, method = request.path, request.method
        try:
            if path == "/v1/models":
                _only(method, "GET")
                return _json(200, self.models())
            if path in ("/v1/chat/completions", "/v1/completions"):
                _only(method, "POST")
                body, stream = gateway_http.openai_body(
                    request.get_data(), path.endswith("/chat/completions")
                )
                where = gateway_rules.target(body.get("model"))
                adapter = where.adapter

                def openai(seen: Observation) -> bytes:
                    return json.dumps({**body, "model": adapter or seen.served_model}).encode()

                verb = "streamRawPredict" if stream else "rawPredict"
                return self.serve(where.endpoint, verb, openai, stream)
            match = _PREDICT.fullmatch(path)
            if match:
                _only(method, "POST")
                endpoint = self._predict_endpoint(match)
                raw = gateway_http.predict_body(request.get_data())
                return self.serve(endpoint, "predict", lambda seen: raw, False)
            raise BadRequest(
                f"no route {path}: /v1/chat/completions, /v1/completions, /v1/models, "
                "/v1/endpoints/<endpoint>:predict",
                404,
            )
        except BadRequest as error:
            return _failure(gateway_http.bad_request(error))
        except ValueError as error:  # gateway_rules.target: the "model" field
            return _failure(gateway_http.bad_request(BadRequest(str(error))))

    def _predict_endpoint(self, match: re.Match[str]) -> str:
        s = self.ctx.settings
        project, region = match["project"], match["region"]
        if project is not None and (project, region) != (s.project, s.region):
            raise BadRequest(f"this gateway serves projects/{s.project}/locations/{s.region}", 404)
        try:
            return gateway_rules.target(match["endpoint"]).endpoint
        except ValueError as error:
            raise BadRequest(str(error), 404) from error

    def models(self) -> dict[str, Any]:
        """Every managed endpoint as an OpenAI model, with the state a request would find it in,
        and a ready one's adapters as `<endpoint>:<adapter>` (one index read per ready endpoint's
        model, kept ADAPTERS_KEPT_S; at most adapters.MAX_LISTED each)."""
        data = []
        for endpoint in self.ctx.vertex.list_managed_endpoints(MANAGED_FILTER):
            seen = self.observer.get(endpoint.id)
            phase = gateway_rules.decide(seen, 0, self.ctx.settings.wake_timeout_s).phase
            created = int(endpoint.create_time.timestamp() if endpoint.create_time else 0)
            entry = {"object": "model", "created": created, "owned_by": "modeldrop"}
            state = Phase.ASLEEP.value if phase is Phase.WAKING else phase.value
            data.append({"id": endpoint.id, **entry, "state": state})
            if phase is Phase.READY and seen.model_label:
                for name in self._adapters(seen.model_label):
                    adapter = {"id": f"{endpoint.id}:{name}", **entry, "state": state}
                    data.append({**adapter, "parent": endpoint.id})
        return {"object": "list", "data": data}

    def _adapters(self, model: str) -> list[str]:
        kept = self._adapter_names.get(model)
        now = self._clock()
        if kept is not None and now - kept[0] < ADAPTERS_KEPT_S:
            return kept[1]
        try:
            names = adapters.indexed(self.ctx, model)
        except ModeldropError as error:  # the endpoint is still listed; its adapters next time
            log.warning("adapters of %s not listed: %s", model, error)
            return []
        self._adapter_names[model] = (now, names)
        return names

    # Serving one request ----------------------------------------------------------------------

    def serve(
        self, endpoint: str, verb: str, body: Callable[[Observation], bytes], stream: bool
    ) -> Response:
        """Answer now if the first look decides (proxied, or refused); otherwise hold."""
        events = self.events(endpoint, verb, body)
        first = next(events)
        if not isinstance(first, Hold):
            return _outcome(first)
        if stream:
            return Response(
                self._held_stream(first, events),
                status=200,
                content_type="text/event-stream",
                headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
                direct_passthrough=True,
            )
        for event in events:
            if not isinstance(event, Hold):
                return _outcome(event)
        raise AssertionError("events() ends with an outcome")  # pragma: no cover

    def events(
        self, endpoint: str, verb: str, body: Callable[[Observation], bytes]
    ) -> Iterator[Event]:
        """Holds while the endpoint wakes, then one outcome: Vertex's answer or a refusal."""
        s = self.ctx.settings
        started = self._clock()
        refusals = 0  # scale-to-zero's 429s so far
        rechecked = False
        relooked = False  # for a dedicated endpoint's DNS
        while True:
            waited = self._clock() - started
            seen = self.observer.get(endpoint)
            if seen.awaiting_dns and not relooked:
                # Vertex may fill dedicated_endpoint_dns only after creating the endpoint (the
                # SDK re-reads it): look again before holding; never send to the shared host,
                # which refuses it. Concurrent requests share the look (Observer single flight).
                relooked = True
                seen = self.observer.fresh(endpoint)
            decision = gateway_rules.decide(seen, waited, s.wake_timeout_s)
            if decision.action is Action.PROXY:
                answer = self._send(endpoint, seen, verb, body(seen))
                if answer is None:  # Vertex is scaling the model up from zero
                    if waited >= s.wake_timeout_s:
                        yield self._refuse(endpoint, Action.GIVE_UP, Phase.SCALING_UP, waited)
                        return
                    pause = gateway_rules.backoff_s(refusals, BACKOFF_CAP_S)
                    refusals += 1
                    reason = f"{endpoint} is scaling up from zero replicas"
                    yield Hold(Phase.SCALING_UP, waited, reason)
                    self._sleep(pause)
                    continue
                if answer.status >= 400 and not rechecked:
                    # A teardown may have raced the last look: if the endpoint serves nothing
                    # now, this request is held like any other that finds it asleep.
                    rechecked = True
                    if not self.observer.fresh(endpoint).serving:
                        answer.close()
                        continue
                yield answer
                return
            if decision.action is Action.WAKE:
                assert decision.wake_request_id is not None
                self.effects.wake(endpoint, decision.wake_request_id)
            elif decision.action is not Action.HOLD:
                yield gateway_http.refusal(decision, endpoint, self._retry_after)
                return
            yield Hold(decision.phase, waited, decision.reason)
            self._sleep(s.gateway_poll_s)

    @property
    def _retry_after(self) -> int:
        return gateway_rules.retry_after_s(self.ctx.settings.wake_timeout_s)

    def _refuse(self, endpoint: str, action: Action, phase: Phase, waited: float) -> Failure:
        reason = f"{endpoint} is still {phase.value} after {waited:.0f}s: retry later"
        return gateway_http.refusal(Decision(action, phase, reason), endpoint, self._retry_after)

    def _held_stream(self, first: Hold, events: Iterator[Event]) -> Iterator[bytes]:
        keepalive_s = self.ctx.settings.gateway_keepalive_s
        yield gateway_http.keepalive(first.phase, first.waited_s, first.reason)
        last = self._clock()
        for event in events:
            if isinstance(event, Hold):
                if self._clock() - last >= keepalive_s:
                    yield gateway_http.keepalive(event.phase, event.waited_s, event.reason)
                    last = self._clock()
            elif isinstance(event, Failure):
                yield gateway_http.sse_error(event.code, event.body)
            elif event.status != 200:
                yield gateway_http.sse_error(
                    event.status, gateway_http.upstream_error(event.status, event.text())
                )
            else:
                yield from event.chunks()

    def _send(self, endpoint: str, seen: Observation, verb: str, body: bytes) -> Answer | None:
        """Vertex's answer; None when scale-to-zero refused it (Vertex scales up by itself)."""
        self.effects.touch(endpoint, seen)
        try:
            # A dedicated endpoint's host comes from the cached observation: no Vertex call here.
            answer = self.prediction.call(endpoint, verb, body, seen.dedicated_dns)
        except ModeldropError as error:
            log.warning("%s on %s did not reach Vertex: %s", verb, endpoint, error)
            self.observer.forget(endpoint)
            return _unreachable(endpoint, str(error))
        if answer.status == 429:
            text = answer.text()
            if gateway_rules.is_scale_up(429, text):
                return None
            return _unreachable(endpoint, text, 429)
        return answer


def _only(method: str, allowed: str) -> None:
    if method != allowed:
        raise BadRequest(f"{method} is not allowed here: {allowed}", 405)


def _unreachable(endpoint: str, text: str, code: int = 503) -> Answer:
    """A refusal on the way to the container (Vertex unreachable, a quota 429), passed through."""
    if code == 503:
        body = gateway_http.error_body(
            503, "UNAVAILABLE", "ServiceUnavailableError", f"{endpoint}: {text}"
        )
    else:
        body = gateway_http.upstream_error(code, text)
    return answered(code, json.dumps(body).encode())


def _outcome(outcome: Outcome) -> Response:
    if isinstance(outcome, Failure):
        return _failure(outcome)
    return Response(
        outcome.chunks(),
        status=outcome.status,
        headers=outcome.headers,
        direct_passthrough=True,
    )


def _failure(failure: Failure) -> Response:
    return Response(
        json.dumps(failure.body),
        status=failure.code,
        content_type="application/json",
        headers=failure.headers,
    )


def _json(code: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=code, content_type="application/json")


@cache
def front_door() -> Gateway:
    """The process's gateway, built on the first request (settings read once, clients lazily)."""
    return Gateway(context())
