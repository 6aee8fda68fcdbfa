"""Active talkers as the room's participants hear them (PROTOCOL.md section 5; wire notes in
docs/protocol/active-talkers.md).

EnableX rooms are active-talker rooms: the official web client and EnableX's sample apps play
remote video only for the streams ``active-talkers-updated`` names. Every ``tick_s`` the
ticker reads each publish leg's :class:`~.voice.VoiceActivity`, orders the room's streams
(:mod:`.ranking`) and sends each participant its own list (without its own streams, at most
its talker count) when it changed, and never more often than once per ``min_interval_s``
per participant: a change inside that time goes out when it is up, as the latest state. Rooms
created with ``active_talker: false`` get no list.

Requests: ``setTalkerCount {numTalkers}`` (0 to the room's ``max_active_talkers``),
``getTalkerCount``, and for moderators ``pinUsers`` / ``unpinUsers {clients}``. Bad input is
refused by the proto layer (4121) or here (1155, 1168 for a non-moderator pin) and changes
nothing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from bot.proto import (
    Ack,
    ActiveTalkersUpdated,
    ErrorCode,
    GetTalkerCount,
    PinUsers,
    SetTalkerCount,
    UnpinUsers,
)

from ..errors import RequestRefused
from ..media import MediaServer
from ..outbox import Outbox
from ..presence import Handler, Presences, Session
from ..rooms import Participant, Room, RoomRegistry
from ..tasks import Tasks
from .ranking import Candidate, RoomTalkers, entry, list_for

log = structlog.get_logger(__name__)

Json = dict[str, Any]

TICK_S = 0.25
MIN_INTERVAL_S = 0.5
HANGOVER_S = 1.0


class ActiveTalkers:
    """The talker lists of every room of one server, and their requests."""

    def __init__(
        self,
        *,
        rooms: RoomRegistry,
        media: MediaServer,
        presences: Presences,
        outbox: Outbox,
        tasks: Tasks,
        max_talkers: int = 6,
        tick_s: float = TICK_S,
        min_interval_s: float = MIN_INTERVAL_S,
        hangover_s: float = HANGOVER_S,
    ) -> None:
        self.rooms = rooms
        self.media = media
        self.presences = presences
        self.outbox = outbox
        self.tasks = tasks
        self.max_talkers = max_talkers
        self.tick_s = tick_s
        self.min_interval_s = min_interval_s
        self.hangover_s = hangover_s
        self._rooms: dict[str, RoomTalkers] = {}
        self.updates_sent = 0

    def handlers(self) -> dict[type, Handler]:
        return {
            SetTalkerCount: self._on_set_count,
            GetTalkerCount: self._on_get_count,
            PinUsers: self._on_pin,
            UnpinUsers: self._on_unpin,
        }

    def start(self) -> None:
        self.tasks.spawn(self._loop(), name="active-talkers", where="talkers_loop")

    def room_max(self, room: Room) -> int:
        value = room.settings.get("max_active_talkers", self.max_talkers)
        return value if isinstance(value, int) and not isinstance(value, bool) else self.max_talkers

    def state(self, room: Room) -> RoomTalkers:
        state = self._rooms.get(room.room_id)
        if state is None:
            state = self._rooms[room.room_id] = RoomTalkers(hangover_s=self.hangover_s)
        return state

    def view(self, room_id: str, client_id: str) -> list[int] | None:
        """The stream ids of the list ``client_id`` was last sent (None: none yet), for the
        room view."""
        state = self._rooms.get(room_id)
        if state is None:
            return None
        sent = [v for (c, _sid), v in state.sent.items() if c == client_id]
        return [e["streamId"] for e in sent[-1]] if sent else None

    # ------------------------------------------------------------------ the ticker

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            await self.tick(time.monotonic())

    async def tick(self, now: float) -> None:
        live = set()
        for room in self.rooms:
            live.add(room.room_id)
            try:
                await self._tick_room(room, now)
            except Exception as exc:  # one room's bug must not silence the others
                log.exception("active_talkers_failed", room=room.room_id)
                self.tasks.failures.record("talkers_loop", exc)
        for room_id in [r for r in self._rooms if r not in live]:
            del self._rooms[room_id]

    async def _tick_room(self, room: Room, now: float) -> None:
        state = self.state(room)
        candidates = []
        for stream in list(room.streams.values()):
            owner = room.participants.get(stream.client_id)
            leg = self.media.publish_leg(room.room_id, stream.id)
            voiced = leg is not None and leg.voice.take()
            if not stream.announced or owner is None or stream.id in owner.stale_streams:
                continue
            state.observe(stream.id, voiced and stream.audio and not owner.audio_muted, now)
            candidates.append(Candidate(stream_id=stream.id, client_id=stream.client_id))
        state.forget_streams({c.stream_id for c in candidates})
        state.forget_clients(set(room.participants))
        if not room.settings.get("active_talker", True):
            return
        order = state.order(candidates, now)
        maximum = self.room_max(room)
        for participant in list(room.participants.values()):
            if participant.away or not participant.announced:
                continue
            key = (participant.client_id, participant.sid)
            count = min(state.counts.get(participant.client_id, maximum), maximum)
            chosen = list_for(order, participant.client_id, count)
            entries = [self._entry(room, c, state) for c in chosen]
            if state.sent.get(key) == entries or now - state.sent_at.get(key, -1e9) < self.min_interval_s:
                continue
            state.sent[key], state.sent_at[key] = entries, now
            await self.outbox.send(participant, ActiveTalkersUpdated(active_list=entries))
            self.updates_sent += 1
            head = chosen[0] if chosen else None
            head_owner = room.participants.get(head.client_id) if head is not None else None
            log.debug(
                "active_talkers_sent",
                room=room.room_id,
                client_id=participant.client_id,
                user=head_owner.name if head_owner is not None else None,
                user_id=head.client_id if head is not None else None,
                stream_ids=[c.stream_id for c in chosen],
            )

    def _entry(self, room: Room, c: Candidate, state: RoomTalkers) -> Json:
        stream = room.streams[c.stream_id]
        owner = room.participants[c.client_id]
        return entry(
            stream_id=stream.id,
            client_id=owner.client_id,
            name=owner.name or stream.name,
            audio=stream.audio,
            video=stream.video,
            video_muted=owner.video_muted,
            bw_low=stream.id in owner.bw_low,
            pinned=owner.client_id in state.pinned,
        )

    # ------------------------------------------------------------------ requests

    def _member(self, session: Session) -> tuple[Room, Participant]:
        seat = self.presences.seat(session)
        if seat is None:
            raise RequestRefused("not in a room", ErrorCode.NOT_JOINED)
        return seat

    async def _on_set_count(self, session: Session, event: SetTalkerCount) -> Json:
        room, participant = self._member(session)
        maximum = self.room_max(room)
        if event.count > maximum:
            raise RequestRefused(
                f"setTalkerCount: numTalkers {event.count} is above this room's maximum of {maximum}",
                ErrorCode.INVALID_PARAMETERS,
            )
        self.state(room).counts[participant.client_id] = event.count
        log.info("talker_count_set", room=room.room_id, client_id=participant.client_id, count=event.count)
        return Ack(fields={"numTalkers": event.count}).to_payload()

    async def _on_get_count(self, session: Session, event: GetTalkerCount) -> Json:
        room, participant = self._member(session)
        maximum = self.room_max(room)
        count = min(self.state(room).counts.get(participant.client_id, maximum), maximum)
        return Ack(fields={"numTalkers": count}).to_payload()

    def _pinnable(
        self, session: Session, clients: tuple[str, ...], what: str, *, known: bool
    ) -> tuple[Room, RoomTalkers]:
        room, participant = self._member(session)
        if participant.role != "moderator":
            raise RequestRefused(f"{what}: only a moderator may pin users", ErrorCode.NOT_PERMITTED)
        unknown = [c for c in clients if c not in room.participants] if known else []
        if unknown:
            raise RequestRefused(
                f"{what}: no participant {', '.join(repr(c[:64]) for c in unknown[:5])} in this room",
                ErrorCode.INVALID_PARAMETERS,
            )
        return room, self.state(room)

    async def _on_pin(self, session: Session, event: PinUsers) -> Json:
        room, state = self._pinnable(session, event.clients, "pinUsers", known=True)
        state.pinned.extend(c for c in event.clients if c not in state.pinned)
        log.info("users_pinned", room=room.room_id, client_id=session.client_id, pinned=list(state.pinned))
        return Ack(fields={"clients": list(state.pinned)}).to_payload()

    async def _on_unpin(self, session: Session, event: UnpinUsers) -> Json:
        room, state = self._pinnable(session, event.clients, "unpinUsers", known=False)
        state.pinned = [c for c in state.pinned if c not in event.clients]
        log.info("users_unpinned", room=room.room_id, client_id=session.client_id, pinned=list(state.pinned))
        return Ack(fields={"clients": list(state.pinned)}).to_payload()
