"""Joining a room with a waiting room (knock / wait_for_moderator), seen from the joiner.

After the token ack the server may answer ``room-awaited`` instead of ``room-connected``: the
join then waits (``on_room_awaited`` fires) up to ``room_info.wait_timeout_s`` for
``room-allowed`` and ``room-connected``. A moderator's denial arrives as ``room-disconnected``
(4130) and a wait that runs out ends the join with 4131; either is a RoomError from
``join_room``, after ``on_room_error``. Waiting is not connecting: the 10 s allowed for
``room-connected`` start again once the wait is over.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot.proto import ErrorCode, RoomAllowed, RoomAwaited, RoomDisconnected

from .callbacks import CallbackName, Json
from .errors import RoomError
from .options import RoomInfo

Fire = Callable[[CallbackName, Json], Awaitable[None]]


class Admission:
    """How long a join may still wait for ``room-connected``, moved by what the server says."""

    def __init__(
        self, room_info: RoomInfo, log: Any, fire: Fire, *, loop_time: float, connect_s: float
    ) -> None:
        self._room_info = room_info
        self._log = log
        self._fire = fire
        self._connect_s = connect_s
        self.deadline = loop_time + connect_s
        self.waiting_since: float | None = None
        self.reason: str | None = None

    @property
    def waiting(self) -> bool:
        return self.waiting_since is not None

    async def handle(self, item: object, loop_time: float) -> bool:
        """Act on an item that came before ``room-connected``; True when it was ours."""
        wait_s = self._room_info.wait_timeout_s
        if isinstance(item, RoomAwaited):
            if self.waiting_since is None:
                self.waiting_since = time.monotonic()
                self.deadline = loop_time + wait_s
            self.reason = item.event_type
            self._log.debug("room_awaited", reason=item.event_type, wait_timeout_s=wait_s)
            await self._fire("on_room_awaited", item.to_payload())
            return True
        if isinstance(item, RoomAllowed):
            self._log.debug("room_allowed", waited_ms=self.waited_ms())
            self.deadline = loop_time + self._connect_s
            return True
        if isinstance(item, RoomDisconnected):
            raise RoomError(item.cause, f"the room turned us away: {item.msg or item.cause}")
        return False

    def waited_ms(self) -> float | None:
        if self.waiting_since is None:
            return None
        return round((time.monotonic() - self.waiting_since) * 1000, 1)

    def timed_out(self) -> RoomError:
        wait = self._room_info.wait_timeout_s
        return RoomError(
            ErrorCode.AWAIT_TIMED_OUT,
            f"waited {wait:g} s in the waiting room ({self.reason}) without being let in",
        )
