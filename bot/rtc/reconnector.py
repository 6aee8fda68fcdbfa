"""The rejoin attempts after a loss, over the policy of ``reconnect.py`` (PROTOCOL.md section 8).

:class:`Reconnector` owns the loop only: spacing, the budget, waiting for the network, one
``on_reconnect`` per attempt, what a failed attempt means (a token refusal ends it, anything
else is retried). What an attempt *is* (a new session, re-subscribing, re-publishing up to
``ready``) and how to clean up after one are given to it (``rejoin``, ``abandon``), as are the
clock and the sleep, so it is tested with fakes. :meth:`Reconnector.run` returns the outcome
(:class:`Rejoined`, a :class:`~bot.rtc.reconnect.GiveUp`, or None when the app left meanwhile);
the owner acts on it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from . import reconnect
from .errors import RoomError, SignallingError
from .reconnect import GiveUp, ReconnectPolicy


@dataclass(frozen=True, kw_only=True)
class Rejoined:
    """The attempt that made it, and our new stream (None when not publishing)."""

    attempt: int
    stream_id: int | None


Attempt = Callable[[int, float], Awaitable["int | None"]]
"""``rejoin(attempt, within)``: one attempt; the new stream id. Raises RoomError/TimeoutError."""


class Reconnector:
    """One reconnection: made on a loss, :meth:`run` once."""

    def __init__(
        self,
        policy: ReconnectPolicy,
        *,
        rejoin: Attempt,
        abandon: Callable[[], Awaitable[None]],
        wait_for_network: Callable[[float], Awaitable[None]],
        announce: Callable[[int, int, str], Awaitable[bool]],
        log: Callable[[], Any],
        on_failure: Callable[[str, BaseException], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``wait_for_network(deadline)`` raises TimeoutError(problem) past ``deadline``;
        ``announce(attempt, attempts, last_error)`` fires ``on_reconnect`` and says whether
        to go on (False: the app disconnected); ``log()`` is the current logger."""
        self.policy = policy
        self._rejoin = rejoin
        self._abandon = abandon
        self._wait_for_network = wait_for_network
        self._announce = announce
        self._log = log
        self._on_failure = on_failure
        self._clock = clock
        self._sleep = sleep
        self._lost: asyncio.Future[str] | None = None

    async def run(self, reason: str, lost_at: float) -> Rejoined | GiveUp | None:
        """Attempts until one succeeds (:class:`Rejoined`) or the policy gives up
        (:class:`GiveUp`: 1165 attempts, 1166 budget, 1178 refused); None if ``announce``
        said stop. A bug inside gives up too (1165, logged ``reconnect_crashed``)."""
        policy = self.policy
        try:
            return await self._attempts(reason, lost_at)
        except GiveUp as give_up:
            return give_up
        except Exception as exc:  # a bug: still leave the room, never hang in "reconnecting"
            self._log().exception("reconnect_crashed")
            if self._on_failure is not None:
                self._on_failure("reconnector", exc)
            return reconnect.exhausted(policy.attempts, f"internal error: {exc!r}")

    async def _attempts(self, reason: str, lost_at: float) -> Rejoined | None:
        policy = self.policy
        deadline = lost_at + policy.budget_s
        last_error = reason
        for attempt in range(1, policy.attempts + 1):
            pause = min(policy.delay_before(attempt), deadline - self._clock())
            if pause > 0:
                await self._sleep(pause)
            try:
                await self._wait_for_network(deadline)
            except TimeoutError as exc:
                raise reconnect.timed_out(policy.budget_s, str(exc) or last_error) from None
            left = deadline - self._clock()
            if left <= 0:
                raise reconnect.timed_out(policy.budget_s, last_error)
            self._log().debug("reconnect", attempt=attempt, attempts=policy.attempts)
            if not await self._announce(attempt, policy.attempts, last_error):
                return None  # the app disconnected
            within = min(left, policy.attempt_timeout_s)
            try:
                stream_id = await self._rejoin(attempt, within)
            except RoomError as err:
                await self._abandon()
                if err.code in reconnect.REFUSAL_CODES:
                    raise reconnect.refused(err.code, err.msg) from None
                last_error = f"{err.code}: {err.msg}"
            except TimeoutError:
                await self._abandon()
                last_error = f"attempt {attempt} took longer than {within:.1f} s"
            else:
                return Rejoined(attempt=attempt, stream_id=stream_id)
            self._log().debug("reconnect_failed", attempt=attempt, error=last_error)
            if self._clock() >= deadline:
                raise reconnect.timed_out(policy.budget_s, last_error)
        raise reconnect.exhausted(policy.attempts, last_error)

    # ------------------------------------------------------------------ during an attempt

    async def unless_lost(self, ready: asyncio.Future[int]) -> int:
        """Wait for ``ready`` (the new stream's) unless the new connection is lost first
        (:meth:`lost`): then SignallingError, and the attempt fails."""
        lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._lost = lost
        try:
            await asyncio.wait((ready, lost), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._lost = None
            if not lost.done():
                lost.cancel()
        if ready.done():
            return ready.result()
        raise SignallingError(lost.result())

    def lost(self, reason: str) -> None:
        """The attempt's connection broke (socket closed, leg failed): fail the attempt."""
        lost = self._lost
        if lost is not None and not lost.done():
            lost.set_result(reason)
