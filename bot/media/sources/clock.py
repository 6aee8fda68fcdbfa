"""Real-time pacing shared by every source.

aiortc sends whatever ``recv()`` returns as soon as it returns, so a source must sleep until
each frame is due or it floods the network.
"""

from __future__ import annotations

import asyncio
import time


class Pacer:
    """Sleeps until a frame's media time is due on the monotonic wall clock.

    The schedule starts at the first frame. If the consumer falls more than ``max_lag`` seconds
    behind (a stalled event loop), the schedule moves forward instead of bursting the backlog:
    a burst of late frames only fills the receivers' jitter buffers.
    """

    def __init__(self, max_lag: float = 0.5) -> None:
        self._max_lag = max_lag
        self._origin: float | None = None

    def reset(self) -> None:
        """Forget the schedule; the next frame starts a new one."""
        self._origin = None

    async def wait(self, media_time: float) -> None:
        """Return when ``media_time`` (seconds since the stream's start) is due."""
        now = time.monotonic()
        if self._origin is None:
            self._origin = now - media_time
            return
        delay = self._origin + media_time - now
        if delay > 0:
            await asyncio.sleep(delay)
        elif -delay > self._max_lag:
            self._origin -= delay  # delay is negative: shift the schedule to "due now"
