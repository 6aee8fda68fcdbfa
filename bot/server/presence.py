"""Who is on which socket, and what outlives a socket: away, grace, stale streams, leaving.

PROTOCOL.md sections 6 and 8 (the story is told in :mod:`.signalling`). Every change of a
participant's phase goes through its :class:`bot.proto.PhaseMachine` here (ADMITTED, DROPPED,
REJOINED, GRACE_EXPIRED, LEAVE), so an impossible order (a rejoin of someone who left, a drop
of someone away) raises :class:`bot.proto.PhaseError` instead of leaving a wrong state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from bot.proto import StreamRemoved, Trigger, UserDisconnected

from .media import MediaServer
from .outbox import Outbox
from .rooms import Participant, Room, RoomRegistry, Stream
from .tasks import Tasks

log = structlog.get_logger(__name__)

RECONNECT_GRACE_S = 10.0  # how long a participant whose socket dropped is kept for a rejoin


@dataclass(kw_only=True)
class Session:
    """One Socket.IO connection; joined once ``token`` succeeded. ``left`` once it left the
    room (``drop``) or a rejoin on a newer socket took its participant over."""

    sid: str
    remote_ip: str
    base_url: str = ""
    transport: Any = None  # the TCP transport under the WebSocket (fault injection)
    room_id: str | None = None
    client_id: str | None = None
    left: bool = False
    timers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def joined(self) -> bool:
        return self.client_id is not None and not self.left


Handler = Callable[[Session, Any], Awaitable[dict[str, Any] | None]]
"""A request handler of one of the server's parts: the session and the decoded event in, the
ack's payload out (None: an ack without payload)."""


@dataclass(kw_only=True)
class Presence:
    """A participant's tasks, which outlive its socket: media legs, grace and stale timers."""

    leg_tasks: dict[tuple[str, int], asyncio.Task[None]] = field(default_factory=dict)
    grace: asyncio.Task[None] | None = None
    stale: asyncio.Task[None] | None = None
    away_since: float | None = None

    def tasks(self) -> list[asyncio.Task[None]]:
        timers = [t for t in (self.grace, self.stale) if t is not None]
        return [*self.leg_tasks.values(), *timers]


class Presences:
    """The sessions of one server and the presence of each participant in its room."""

    def __init__(
        self,
        *,
        rooms: RoomRegistry,
        media: MediaServer,
        outbox: Outbox,
        tasks: Tasks,
        reconnect_grace_s: float = RECONNECT_GRACE_S,
    ) -> None:
        self.rooms = rooms
        self.media = media
        self.outbox = outbox
        self.tasks = tasks
        self.reconnect_grace_s = reconnect_grace_s
        self.sessions: dict[str, Session] = {}
        self._presence: dict[tuple[str, str], Presence] = {}

    def of(self, room: Room, participant: Participant) -> Presence:
        key = (room.room_id, participant.client_id)
        presence = self._presence.get(key)
        if presence is None:
            presence = self._presence[key] = Presence()
        return presence

    def seat(self, session: Session) -> tuple[Room, Participant] | None:
        """The room and participant this socket holds now; None once a newer socket took the
        participant over, or it is gone."""
        room = self.rooms.find(session.room_id or "")
        participant = None if room is None else room.participants.get(session.client_id or "")
        if room is None or participant is None or participant.sid != session.sid:
            return None
        return room, participant

    async def disconnect_later(self, session: Session, delay: float) -> None:
        await asyncio.sleep(delay)
        if session.sid in self.sessions:
            await self.outbox.disconnect(session.sid)

    # ------------------------------------------------------------------ joining, rejoining

    def admit(self, session: Session, room: Room, participant: Participant) -> None:
        """A fresh participant on this socket, listed to the others from now on."""
        room.add_participant(participant)
        participant.phase.step(Trigger.ADMITTED)
        session.room_id, session.client_id = room.room_id, participant.client_id
        self.end_handshake(session)

    def end_handshake(self, session: Session) -> None:
        self.tasks.cancel(session.timers)
        session.timers.clear()

    async def restore(self, session: Session, room: Room, participant: Participant) -> float | None:
        """Move a participant onto a new socket (same clientId, nothing for the others to see
        yet); its old streams become stale. Returns how long it was away, if it was."""
        presence = self.of(room, participant)
        self.tasks.cancel([presence.grace])
        presence.grace = None
        away_s = None if presence.away_since is None else time.monotonic() - presence.away_since
        presence.away_since = None
        taking_over = not participant.away
        if taking_over:  # its old socket still looks alive: this one takes over
            old = self.sessions.get(participant.sid)
            if old is not None:
                old.left = True
                self.tasks.cancel(old.timers)
                self.tasks.spawn(self.disconnect_later(old, 0), name=f"replaced-{old.sid}")
        # the old socket's subscriptions went with its peer connections; it subscribes again
        subscriptions = [k for k in presence.leg_tasks if k[0] == "subscribe"]
        self.tasks.cancel(presence.leg_tasks.pop(k) for k in subscriptions)
        await self.media.close_subscriptions(room.room_id, participant.client_id)
        participant.subscriptions.clear()
        participant.stale_streams |= {
            s.id for s in room.streams.values() if s.client_id == participant.client_id
        }
        participant.bw_low.clear()  # verdicts were about the old connection
        participant.bw_forced = False
        if taking_over:  # the server drops the old socket, the new one rejoins
            participant.phase.step(Trigger.DROPPED)
        participant.phase.step(Trigger.REJOINED)
        participant.sid = session.sid
        participant.announced = False
        participant.pending.clear()
        if participant.stale_streams:
            self.tasks.cancel([presence.stale])
            presence.stale = self.tasks.spawn(
                self._stale_expiry(room, participant), name=f"stale-{participant.client_id}"
            )
        session.room_id, session.client_id = room.room_id, participant.client_id
        self.end_handshake(session)
        return away_s

    # ------------------------------------------------------------------ away, stale

    def hold(self, room: Room, participant: Participant, *, reason: str) -> None:
        """The socket dropped without ``drop``: keep the participant for the grace period."""
        participant.phase.step(Trigger.DROPPED)
        presence = self.of(room, participant)
        participant.sid = ""
        participant.announced = False
        participant.pending.clear()
        presence.away_since = time.monotonic()
        self.tasks.cancel([presence.grace])
        presence.grace = self.tasks.spawn(
            self._grace_expiry(room, participant), name=f"grace-{participant.client_id}"
        )
        log.info(
            "participant_away",
            room=room.room_id,
            client_id=participant.client_id,
            reason=reason,
            grace_s=self.reconnect_grace_s,
        )

    async def _grace_expiry(self, room: Room, participant: Participant) -> None:
        await asyncio.sleep(self.reconnect_grace_s)
        if participant.away and room.participants.get(participant.client_id) is participant:
            await self.depart(room, participant, cause="grace_expired", trigger=Trigger.GRACE_EXPIRED)

    async def _stale_expiry(self, room: Room, participant: Participant) -> None:
        """A rejoined participant that does not publish again loses its old streams anyway."""
        await asyncio.sleep(self.reconnect_grace_s)
        if room.participants.get(participant.client_id) is participant:
            await self.remove_stale(room, participant, cause="stale")

    async def remove_stale(self, room: Room, participant: Participant, *, cause: str) -> None:
        presence = self.of(room, participant)
        self.tasks.cancel([presence.stale])
        presence.stale = None
        for stream_id in sorted(participant.stale_streams):
            stream = room.streams.get(stream_id)
            if stream is not None:
                await self.remove_stream(room, stream, cause=cause, retire=True)
        participant.stale_streams.clear()

    async def remove_stream(self, room: Room, stream: Stream, *, cause: str, retire: bool = False) -> None:
        room.remove_stream(stream.id, retire=retire)
        presence = self._presence.get((room.room_id, stream.client_id))
        if presence is not None:
            self.tasks.cancel([presence.leg_tasks.pop(("publish", stream.id), None)])
        if stream.announced:
            await self.outbox.broadcast(room, StreamRemoved(stream_id=stream.id), exclude=stream.client_id)
        await self.media.close_publish(room.room_id, stream.id)
        log.info("stream_unpublished", room=room.room_id, stream_id=stream.id, cause=cause)

    # ------------------------------------------------------------------ leaving

    async def leave(self, session: Session, *, cause: str) -> None:
        """The participant of this socket leaves (idempotent; nothing if a newer socket has
        taken it over)."""
        if not session.joined:
            return
        session.left = True
        seat = self.seat(session)
        if seat is not None:
            await self.depart(*seat, cause=cause)

    async def depart(
        self, room: Room, participant: Participant, *, cause: str, trigger: Trigger = Trigger.LEAVE
    ) -> None:
        """Remove everything the participant owned; others hear onRemoveStream per stream,
        then user-disconnected. Idempotent."""
        if room.participants.get(participant.client_id) is not participant:
            return
        participant.phase.step(trigger)  # an illegal move raises before anything changed
        departure = room.remove_participant(participant.client_id)
        if departure is None:
            return
        presence = self._presence.pop((room.room_id, participant.client_id), None)
        if presence is not None:
            self.tasks.cancel(presence.tasks())
        who = departure.participant
        for stream in departure.streams:
            if stream.announced:
                await self.outbox.broadcast(room, StreamRemoved(stream_id=stream.id), exclude=who.client_id)
        info = who.user_info()
        await self.outbox.broadcast(
            room,
            UserDisconnected(
                client_id=who.client_id, name=who.name, role=who.role, permissions=info.permissions
            ),
            exclude=who.client_id,
        )
        await self.media.close_client(room.room_id, who.client_id, [s.id for s in departure.streams])
        log.info("participant_left", room=room.room_id, client_id=who.client_id, cause=cause)

    async def close_room(self, room: Room) -> None:
        """Disconnect everyone in a room being deleted."""
        for participant in list(room.participants.values()):
            sid = participant.sid
            session = self.sessions.get(sid) if sid else None
            if session is not None:
                session.left = True
            await self.depart(room, participant, cause="room_deleted")
            if session is not None:
                await self.outbox.disconnect(sid)

    async def depart_all(self, *, cause: str) -> None:
        """Everyone leaves: the joined sockets, then the away participants (no socket)."""
        for session in list(self.sessions.values()):
            await self.leave(session, cause=cause)
        for room in self.rooms:
            for participant in list(room.participants.values()):
                await self.depart(room, participant, cause=cause)
        self.sessions.clear()
