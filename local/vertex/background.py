"""Work that outlives a request: each long-running operation's task, kept so it can be cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class Background:
    """Running tasks, by operation name where they carry one (CancelOperation finds them there)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self.by_operation: dict[str, asyncio.Task[None]] = {}
        # Operations cancelled on request (not by shutdown): their tasks end them CANCELLED.
        self.cancelled: set[str] = set()

    def spawn(
        self, work: Coroutine[Any, Any, None], operation: str | None = None
    ) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if operation is not None:
            self.by_operation[operation] = task
            task.add_done_callback(lambda _: self.by_operation.pop(operation, None))
        return task

    def cancel(self, operation: str) -> bool:
        """Cancel the task of `operation`; False when none runs (done, or never had one)."""
        task = self.by_operation.get(operation)
        if task is None or task.done():
            return False
        self.cancelled.add(operation)
        task.cancel()
        return True

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
