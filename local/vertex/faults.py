"""Fault injection: seeded per-method errors and latency, GPU stockouts (all, or per accelerator
and region) and slow deploys."""

from __future__ import annotations

import asyncio
import fnmatch
import random
import re

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from local.vertex.errors import HTTP_TO_STATUS, ApiError

# Every method faults can target: the RPC names of the routes (the control routes never fail).
METHODS = (
    "UploadModel", "GetModel", "ListModels", "ListModelVersions", "UpdateModel",
    "MergeVersionAliases", "DeleteModel", "DeleteModelVersion",
    "CreateEndpoint", "GetEndpoint", "ListEndpoints", "UpdateEndpoint", "DeleteEndpoint",
    "DeployModel", "UndeployModel", "MutateDeployedModel", "GetOperation", "WaitOperation",
    "Predict", "RawPredict", "StreamRawPredict", "ChatCompletions", "Completions",
    "ListTimeSeries",
)  # fmt: skip


def _check_method(pattern: str) -> None:
    if not any(fnmatch.fnmatchcase(method, pattern) for method in METHODS):
        raise ValueError(f"{pattern!r} matches no method; methods: {', '.join(METHODS)}")


MESSAGES = {
    "RESOURCE_EXHAUSTED": "Quota exceeded for aiplatform.googleapis.com (injected fault).",
    "UNAVAILABLE": "The service is currently unavailable (injected fault).",
    "INTERNAL": "Internal error encountered (injected fault).",
}


class _Config(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class FaultRule(_Config):
    """Fail calls to methods matching `method` (an RPC name or a glob like `*Predict`) at `rate`."""

    method: str = "*"
    rate: float = Field(ge=0.0, le=1.0)
    code: int = 503

    def model_post_init(self, _context: object) -> None:
        if self.code not in HTTP_TO_STATUS:
            raise ValueError(f"code must be one of {sorted(HTTP_TO_STATUS)}, not {self.code}")
        _check_method(self.method)


class FaultConfig(_Config):
    """Every fault the emulator injects; the control API replaces it whole."""

    rules: list[FaultRule] = Field(default_factory=list)
    latency_ms: dict[str, float] = Field(default_factory=dict)
    # True: every accelerator everywhere; a list: `ACCELERATOR`, `ACCELERATOR@REGION` or
    # `*@REGION` entries (a stockout is one machine's capacity in one place, not all of Vertex).
    stockout: bool | list[str] = False
    deploy_delay_s: float = Field(default=0.0, ge=0.0)
    seed: int | None = None

    def model_post_init(self, _context: object) -> None:
        for pattern in self.latency_ms:
            _check_method(pattern)
        for entry in self.stockout if isinstance(self.stockout, list) else []:
            _check_stockout(entry)

    def stocked_out(self, accelerator: str | None, region: str) -> bool:
        """Whether a deploy asking for `accelerator` in `region` finds no capacity."""
        if not accelerator or self.stockout is False:
            return False
        if self.stockout is True:
            return True
        for entry in self.stockout:
            kind, _, where = entry.partition("@")
            if kind in ("*", accelerator) and where in ("", region):
                return True
        return False


_STOCKOUT_ENTRY = re.compile(r"(\*|[A-Z0-9_]{1,63})(@[a-z0-9-]{1,63})?")


def _check_stockout(entry: str) -> None:
    if not _STOCKOUT_ENTRY.fullmatch(entry):
        raise ValueError(
            f"stockout entry {entry!r} must be ACCELERATOR, ACCELERATOR@REGION or *@REGION "
            "(e.g. NVIDIA_L4, NVIDIA_TESLA_A100@us-central1)"
        )


def parse_stockout(values: list[str] | None) -> bool | list[str]:
    """`--stockout` (bare: every accelerator) or `--stockout NVIDIA_L4,NVIDIA_TESLA_A100@R`."""
    if not values:
        return False
    entries = [e.strip() for v in values for e in v.split(",") if e.strip()]
    if not entries or "*" in entries:
        return True
    return entries


STOCKOUT_MESSAGE = (
    "The zone does not have enough resources available to fulfill the request: {accelerator} "
    "is out of stock in {location} (stockout). Try a different region or accelerator, "
    "or try again later."
)


class Faults:
    """The live fault configuration and the seeded random source that draws failures."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self.config = FaultConfig()
        self._rng = random.Random()
        self.update(config or FaultConfig())

    def update(self, config: FaultConfig) -> None:
        # Re-seeding on every update makes a test's sequence of failures reproducible.
        self.config = config
        self._rng = random.Random(config.seed)

    def stockout(self, accelerator: str | None, region: str) -> ApiError | None:
        """The error of a deploy that finds no capacity for `accelerator` in `region`, if any."""
        if not self.config.stocked_out(accelerator, region):
            return None
        message = STOCKOUT_MESSAGE.format(accelerator=accelerator, location=region)
        return ApiError("RESOURCE_EXHAUSTED", message)

    def latency_s(self, method: str) -> float:
        for pattern, millis in self.config.latency_ms.items():
            if fnmatch.fnmatchcase(method, pattern):
                return millis / 1000.0
        return 0.0

    def draw(self, method: str) -> ApiError | None:
        """The error this call fails with, if a matching rule draws one."""
        for rule in self.config.rules:
            if fnmatch.fnmatchcase(method, rule.method) and self._rng.random() < rule.rate:
                status = HTTP_TO_STATUS[rule.code]
                return ApiError(status, MESSAGES.get(status, f"{status} (injected fault)."))
        return None

    async def apply(self, method: str) -> None:
        """Sleep the added latency, then raise the drawn error (if any)."""
        delay = self.latency_s(method)
        if delay > 0:
            await asyncio.sleep(delay)
        error = self.draw(method)
        if error is not None:
            raise error


def parse_rule(text: str) -> FaultRule:
    """`METHOD=RATE[:CODE]` from the command line, e.g. `DeployModel=0.5:429`."""
    method, sep, rest = text.partition("=")
    if not sep:
        raise ValueError(f"expected METHOD=RATE[:CODE], got {text!r}")
    rate, _, code = rest.partition(":")
    return FaultRule(method=method, rate=float(rate), code=int(code or 503))


def parse_latency(text: str) -> tuple[str, float]:
    """`METHOD=MILLIS` (or just `MILLIS` for every method)."""
    method, sep, millis = text.rpartition("=")
    return (method if sep else "*"), float(millis)
