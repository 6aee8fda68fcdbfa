"""The signalling side's background tasks: named, referenced, failures logged and counted."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterable
from typing import Any

import structlog

from .stats import Failures

log = structlog.get_logger(__name__)


class Tasks:
    """Every task the signalling side starts (timers, legs, the detector's loop), so that
    ``aclose`` can stop them all and none fails unseen."""

    def __init__(self, failures: Failures) -> None:
        self.failures = failures
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(
        self, coro: Coroutine[Any, Any, None], name: str, *, where: str = "background_task"
    ) -> asyncio.Task[None]:
        """A named, referenced task whose failure is logged with its traceback and counted
        under ``where``."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, where))
        return task

    def _done(self, task: asyncio.Task[None], where: str) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("task_failed", task=task.get_name(), exc_info=error)
            self.failures.record(where, error)

    @staticmethod
    def cancel(tasks: Iterable[asyncio.Task[None] | None]) -> None:
        """Cancel these tasks, except the one running this (it is finishing anyway)."""
        current = asyncio.current_task()
        for task in tasks:
            if task is not None and task is not current:
                task.cancel()

    async def aclose(self) -> None:
        """Cancel every task and wait for them to end (idempotent)."""
        tasks = list(self._tasks)
        self.cancel(tasks)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
