"""Scale-to-zero at run time: idle models stop, and a request that finds one at zero starts it (429)."""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from local.vertex import scale_to_zero
from local.vertex.deployments import LaunchSpec
from local.vertex.errors import ApiError, as_api_error
from local.vertex.resources import DedicatedResources, ScaleToZeroSpec

if TYPE_CHECKING:
    from local.vertex.rollout import Rollout

log = logging.getLogger(__name__)


class Phase(enum.Enum):
    UP = "up"  # replicas serve; the idle clock runs
    ZERO = "zero"  # no replica; the next request starts a scale-up and is answered 429
    SCALING_UP = "scaling_up"  # a replica is starting; requests are answered 429


@dataclass
class Zeroable:
    """One scale-to-zero deployed model and its clocks (loop time, seconds)."""

    spec: LaunchSpec
    min_up_s: float
    idle_s: float
    up_since: float
    last_request: float
    phase: Phase = Phase.UP
    task: asyncio.Task[None] | None = None


class Scaler:
    """Every scale-to-zero deployed model of the emulator, keyed as deployments are."""

    def __init__(self, rollout: Rollout) -> None:
        self.rollout = rollout
        self.fidelity = rollout.fidelity
        self.models: dict[str, Zeroable] = {}

    def _periods(self, resources: DedicatedResources) -> tuple[float, float]:
        spec = resources.scale_to_zero_spec or ScaleToZeroSpec()
        default = self.fidelity.stz_default_period_s
        scale = self.fidelity.time_scale
        min_up = scale_to_zero.period_s(spec.min_scaleup_period, "min_scaleup_period", default)
        idle = scale_to_zero.period_s(spec.idle_scaledown_period, "idle_scaledown_period", default)
        return min_up * scale, idle * scale

    def watch(self, spec: LaunchSpec, resources: DedicatedResources) -> None:
        """A deployed model that is up (deployed, relaunched or mutated): scale-to-zero starts its clock."""
        self.forget(spec.key)
        if not resources.scales_to_zero:
            return
        min_up, idle = self._periods(resources)
        now = asyncio.get_running_loop().time()
        model = Zeroable(spec, min_up, idle, up_since=now, last_request=now)
        self.models[spec.key] = model
        self._idle_clock(model)

    def forget(self, key: str) -> None:
        """Stop playing scale-to-zero for `key` (undeployed, or mutated to min >= 1)."""
        model = self.models.pop(key, None)
        if model is not None and model.task is not None:
            model.task.cancel()

    def after_mutate(self, spec: LaunchSpec, resources: DedicatedResources) -> None:
        """MutateDeployedModel changed min_replica_count: start, or stop, playing scale-to-zero."""
        model = self.models.get(spec.key)
        if resources.scales_to_zero:
            if model is None:
                self.watch(spec, resources)
            return
        if model is None:
            return
        at_zero = model.phase is not Phase.UP
        self.forget(spec.key)
        if at_zero:  # min_replica_count >= 1 now: a replica must run again
            self.rollout.background.spawn(self._relaunch(spec))

    async def _relaunch(self, spec: LaunchSpec) -> None:
        try:
            await self.rollout.deployments.launch(spec)
        except Exception as error:
            self.rollout._set_status(spec, 0, as_api_error(error).message)
            return
        self.rollout._set_status(spec, 1, "")

    def at_zero(self, key: str) -> bool:
        model = self.models.get(key)
        return model is not None and model.phase is not Phase.UP

    def request(self, key: str) -> None:
        """A prediction for `key` arrived: reset its idle clock, or start a scale-up and answer 429."""
        model = self.models.get(key)
        if model is None:
            return
        model.last_request = asyncio.get_running_loop().time()
        if model.phase is Phase.UP:
            return
        if model.phase is Phase.ZERO:
            model.phase = Phase.SCALING_UP
            model.task = self.rollout.background.spawn(self._scale_up(model))
        raise ApiError("RESOURCE_EXHAUSTED", scale_to_zero.NOT_READY)

    def _idle_clock(self, model: Zeroable) -> None:
        # Time scale 0 (instant operations) would scale to zero after every request: never do.
        if model.idle_s > 0:
            model.task = self.rollout.background.spawn(self._scale_down_when_idle(model))

    async def _scale_down_when_idle(self, model: Zeroable) -> None:
        loop = asyncio.get_running_loop()
        # minScaleupPeriod: up at least this long before traffic is evaluated for scale-down;
        # idleScaledownPeriod: this long without traffic before scaling to zero.
        while (wait := max(model.up_since + model.min_up_s, model.last_request + model.idle_s)
               - loop.time()) > 0:  # fmt: skip
            await asyncio.sleep(wait)
        model.phase = Phase.ZERO
        model.task = None
        await self.rollout.deployments.stop(model.spec.key)
        log.info("%s scaled to zero after %.1fs without traffic", model.spec.key, model.idle_s)
        self.rollout._set_status(
            model.spec, 0, "Scaled to zero: no traffic within the idle scale-down period."
        )

    def _scale_up_s(self, spec: LaunchSpec) -> float:
        if self.fidelity.durations.scale_up > 0:
            return self.fidelity.seconds("scale_up")
        gpu = bool(spec.machine_spec and spec.machine_spec.accelerator_type)
        return self.fidelity.seconds("deploy_gpu" if gpu else "deploy_cpu")

    async def _scale_up(self, model: Zeroable) -> None:
        loop = asyncio.get_running_loop()
        self.rollout._set_status(model.spec, 0, "Scaling up from zero.")
        started = loop.time()
        try:
            await self.rollout.deployments.launch(model.spec)
            await asyncio.sleep(max(0.0, self._scale_up_s(model.spec) - (loop.time() - started)))
        except asyncio.CancelledError:
            await self.rollout.deployments.stop(model.spec.key)
            raise
        except Exception as error:
            message = as_api_error(error).message
            log.warning("scaling %s up from zero failed: %s", model.spec.key, message)
            model.phase, model.task = Phase.ZERO, None
            self.rollout._set_status(model.spec, 0, message)
            return
        model.phase = Phase.UP
        model.up_since = model.last_request = loop.time()
        self.rollout._set_status(model.spec, 1, "")
        self._idle_clock(model)
