"""Room duration: a room created with ``settings.duration`` (minutes) ends for everyone when it
runs out. The clock starts with the session (the first participant in); each participant hears
``conference-remaining-duration {timeLeft}`` at 5 and 1 minute left (one who joins later, on
joining), then ``room-disconnected {cause: {cause: 2003, msg: "conference-expired"}}``, and its
socket closes; waiters hear the same. The next join starts a new session and a new clock.

``minute_s`` is how long a minute of ``duration`` lasts: 60 seconds, shorter only in tests
(``RoomServer(minute_s=...)``). Wire notes: ``docs/protocol/admission.md``.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

import structlog

from bot.proto import ConferenceRemainingDuration, ErrorCode, RoomDisconnected

from .outbox import Outbox
from .presence import Presences
from .rooms import Participant, Room, RoomRegistry
from .tasks import Tasks
from .waiting_room import WaitingRoom

log = structlog.get_logger(__name__)

NOTICE_MINUTES = (5, 1)
"""``conference-remaining-duration`` goes out when this many minutes are left."""
MINUTE_S = 60.0
END_CLOSE_S = 0.5
"""Time for ``room-disconnected`` to reach the participants before their sockets close."""


@dataclass
class Clock:
    ends_at: float
    task: asyncio.Task[None] | None = None
    noticed: bool = False


class RoomClocks:
    """The clocks of the rooms with a duration, on one server."""

    def __init__(
        self,
        *,
        rooms: RoomRegistry,
        presences: Presences,
        outbox: Outbox,
        tasks: Tasks,
        waiting_room: WaitingRoom,
        minute_s: float = MINUTE_S,
    ) -> None:
        if minute_s <= 0:
            raise ValueError("minute_s must be more than 0")
        self.rooms = rooms
        self.presences = presences
        self.outbox = outbox
        self.tasks = tasks
        self.waiting_room = waiting_room
        self.minute_s = minute_s
        self._clocks: dict[str, Clock] = {}

    def remaining_s(self, room: Room) -> float | None:
        clock = self._clocks.get(room.room_id)
        return None if clock is None else max(0.0, clock.ends_at - asyncio.get_running_loop().time())

    async def entered(self, room: Room, participant: Participant) -> None:
        """A join: start the session's clock, or tell a late joiner how long is left."""
        duration = room.settings.get("duration")
        if not isinstance(duration, int) or isinstance(duration, bool) or duration <= 0:
            return
        clock = self._clocks.get(room.room_id)
        if clock is None:
            now = asyncio.get_running_loop().time()
            clock = self._clocks[room.room_id] = Clock(ends_at=now + duration * self.minute_s)
            clock.task = self.tasks.spawn(self._run(room, clock), name=f"room-clock-{room.room_id}")
            log.info("room_clock_started", room=room.room_id, duration_min=duration)
        elif clock.noticed:
            await self.outbox.send(participant, self._notice(clock))

    def _notice(self, clock: Clock) -> ConferenceRemainingDuration:
        left = max(0.0, clock.ends_at - asyncio.get_running_loop().time())
        return ConferenceRemainingDuration(time_left=max(1, math.ceil(left / self.minute_s - 1e-6)))

    async def _run(self, room: Room, clock: Clock) -> None:
        loop = asyncio.get_running_loop()
        for minutes in NOTICE_MINUTES:
            at = clock.ends_at - minutes * self.minute_s
            if at < loop.time() and minutes != NOTICE_MINUTES[-1]:
                continue  # shorter than this notice: only the last one
            await asyncio.sleep(max(0.0, at - loop.time()))
            clock.noticed = True
            notice = self._notice(clock)
            log.info("conference_remaining_duration", room=room.room_id, time_left=notice.time_left)
            for participant in list(room.participants.values()):
                await self.outbox.send(participant, notice)
        await asyncio.sleep(max(0.0, clock.ends_at - loop.time()))
        await self.end(room)

    async def end(self, room: Room) -> None:
        """The room's time is up (or the emulator says so): everyone hears ``room-disconnected``
        (2003) and is let go; the session's clock stops."""
        clock = self._clocks.pop(room.room_id, None)
        if clock is not None and clock.task is not None and clock.task is not asyncio.current_task():
            clock.task.cancel()
        if self.rooms.find(room.room_id) is not room:
            return  # deleted meanwhile
        notice = RoomDisconnected(cause=int(ErrorCode.CONFERENCE_EXPIRED), msg="conference-expired")
        log.info(
            "room_ended", room=room.room_id, reason="conference-expired", participants=len(room.participants)
        )
        participants = list(room.participants.values())
        for participant in participants:
            await self.outbox.send(participant, notice)
        await self.waiting_room.end_room(room, notice)
        for participant in participants:
            session = self.presences.sessions.get(participant.sid) if participant.sid else None
            if session is not None:
                session.left = True
                session.timers.append(
                    self.tasks.spawn(
                        self.presences.disconnect_later(session, END_CLOSE_S),
                        name=f"room-ended-{session.sid}",
                    )
                )
            await self.presences.depart(room, participant, cause="conference_expired")
