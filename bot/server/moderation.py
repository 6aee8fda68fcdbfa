"""Moderator actions: dropping others, hard mutes (room-wide and per user), recording notices
(docs/protocol/moderation.md).

Each request is decoded by :mod:`bot.proto`; a participant calling a moderator request is
refused with EnableX's code for it (5116 drop, 5001/5002 room hard mute, 5007 recording, 1168
per-user hard mute) and nothing changes. A hard mute is enforced here as well as in the SDK:
while a kind is hard-muted the target's own ``user-<kind>-unmuted`` is refused (1168), so a
client that ignores the notice still cannot tell the room it is back. The others hear the
usual ``user-<kind>-muted`` relay when a hard mute silences someone; a release is relayed when
the target unmutes itself (its SDK does so when it was sending before).

``drop`` without ``clientIds`` stays the sender's own leave (:mod:`.requests`); a moderator's
``drop {all, clientIds}`` ends each target's session: ``room-disconnected {cause: {code: 2001,
msg: "disconnected-by-moderator"}}`` to it, then it leaves as if it had sent ``drop`` (others
hear ``onRemoveStream`` and ``user-disconnected``), and its socket is closed a second later if
it has not closed it itself. The REST API's ``DELETE .../participants/{client_id}`` does the same
on behalf of the application server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog

from bot.proto import (
    HARD_MUTE_USER_EVENTS,
    Ack,
    DropRequest,
    ErrorCode,
    HardMuteRoom,
    HardMuteUser,
    HardUnmuteRoom,
    MediaKind,
    RoomDisconnected,
    RoomHardMuted,
    RoomHardUnmuted,
    RoomRecordOff,
    RoomRecordOn,
    SelfMuteRequest,
    StartRecord,
    StopRecord,
    UserMuteChanged,
    hard_mute_user_event,
)

from .errors import ClientNotFound, RequestRefused
from .outbox import Outbox
from .presence import Handler, Presences, Session
from .requests import DROP_GRACE_S
from .rooms import Participant, Room, RoomRegistry
from .tasks import Tasks

log = structlog.get_logger(__name__)

Json = dict[str, Any]

MODERATOR = "moderator"
DROP_CAUSE = "dropped_by_moderator"


@dataclass(kw_only=True)
class RoomModeration:
    """What moderators imposed on one room; ``hard``: per-user hard mutes by client id."""

    muted_by: str | None = None
    recording_by: str | None = None
    hard: dict[str, set[MediaKind]] = field(default_factory=dict)


class Moderation:
    """The handlers of moderator requests, and the guard on self-unmutes while hard-muted.
    ``requests``: the plain handlers (own leave, self mutes) this wraps."""

    def __init__(
        self,
        *,
        rooms: RoomRegistry,
        presences: Presences,
        outbox: Outbox,
        tasks: Tasks,
        requests: dict[type, Handler],
    ) -> None:
        self.rooms = rooms
        self.presences = presences
        self.outbox = outbox
        self.tasks = tasks
        self._plain = requests
        self._state: dict[str, RoomModeration] = {}

    def handlers(self) -> dict[type, Handler]:
        table: dict[type, Handler] = {
            DropRequest: self._on_drop,
            SelfMuteRequest: self._on_self_mute,
            HardMuteRoom: self._on_room_mute,
            HardUnmuteRoom: self._on_room_mute,
            StartRecord: self._on_record,
            StopRecord: self._on_record,
        }
        for cls in HARD_MUTE_USER_EVENTS:
            table[cls] = self._on_user_mute
        return table

    def of(self, room: Room) -> RoomModeration:
        state = self._state.get(room.room_id)
        if state is None:
            state = self._state[room.room_id] = RoomModeration()
        return state

    def hard_muted(self, room: Room, participant: Participant) -> set[MediaKind]:
        """The kinds a moderator keeps this participant from sending now."""
        state = self.of(room)
        kinds = set(state.hard.get(participant.client_id, ()))
        if state.muted_by is not None and participant.role != MODERATOR:
            kinds.add("audio")
        return kinds

    def _moderator(self, session: Session, code: int, what: str) -> tuple[Room, Participant]:
        seat = self.presences.seat(session)
        if seat is None:
            raise RequestRefused("not in a room", ErrorCode.NOT_JOINED)
        room, participant = seat
        if participant.role != MODERATOR:
            raise RequestRefused(f"{what}: only a moderator may do this", code)
        return room, participant

    # ------------------------------------------------------------------ joining

    def admitted(self, room: Room, participant: Participant, rejoin: bool) -> None:
        """A (re)joined participant: held to what is imposed, told after its room-connected.
        A rejoined one is told the whole state, releases included (they may have happened
        while it was away; its SDK ignores what does not change)."""
        state = self.of(room)
        for kind in sorted(self.hard_muted(room, participant)):
            setattr(participant, f"{kind}_muted", True)
        if participant.role != MODERATOR and (rejoin or state.muted_by is not None):
            muted = state.muted_by is not None
            notice = (RoomHardMuted if muted else RoomHardUnmuted)(
                moderator=state.muted_by or "", msg="Room is muted" if muted else "Room is un-muted"
            )
            participant.pending.append(notice)
        hard = state.hard.get(participant.client_id, set())
        for kind in ("audio", "video"):
            if kind in hard or rejoin:
                wire = hard_mute_user_event(kind, kind in hard)
                participant.pending.append(wire(client_id=participant.client_id, msg="state after joining"))
        if state.recording_by is not None:
            participant.pending.append(
                RoomRecordOn(moderator=state.recording_by, msg="Room is being recorded")
            )

    # ------------------------------------------------------------------ self mutes

    async def _on_self_mute(self, session: Session, event: SelfMuteRequest) -> Json | None:
        seat = self.presences.seat(session)
        if seat is not None and not event.muted and event.kind in self.hard_muted(*seat):
            raise RequestRefused(
                f"{event.kind} is hard-muted by a moderator: only a moderator can release it",
                ErrorCode.NOT_PERMITTED,
            )
        return await self._plain[SelfMuteRequest](session, event)

    # ------------------------------------------------------------------ hard mutes

    async def _on_room_mute(self, session: Session, event: HardMuteRoom) -> Json:
        muted = event.MUTED
        code = ErrorCode.HARD_MUTE_NOT_PERMITTED if muted else ErrorCode.HARD_UNMUTE_NOT_PERMITTED
        room, moderator = self._moderator(session, code, event.WIRE)
        return await self.mute_room(room, muted, moderator=moderator.client_id)

    async def mute_room(self, room: Room, muted: bool, *, moderator: str = "") -> Json:
        """Hard-mute (or release) the room; ``moderator`` empty: the emulator asked."""
        state = self.of(room)
        if muted and state.muted_by is not None:
            raise RequestRefused("the room is hard-muted already", ErrorCode.ROOM_ALREADY_HARD_MUTED)
        if not muted and state.muted_by is None:
            raise RequestRefused("the room is not hard-muted", ErrorCode.ROOM_NOT_HARD_MUTED)
        state.muted_by = moderator if muted else None
        log.info("room_hard_muted", room=room.room_id, moderator=moderator or None, muted=muted)
        msg = "Room is muted" if muted else "Room is un-muted"
        notice = (RoomHardMuted if muted else RoomHardUnmuted)(moderator=moderator, msg=msg)
        for other in list(room.others(moderator)):
            if muted and other.role != MODERATOR:
                await self._silence(room, other, "audio")
            await self.outbox.send(other, notice)
        return Ack(msg=msg).to_payload()

    async def _on_user_mute(self, session: Session, event: HardMuteUser) -> Json:
        room, moderator = self._moderator(session, ErrorCode.NOT_PERMITTED, event.WIRE)
        return await self.mute_user(
            room, event.client_id, event.KIND, event.MUTED, moderator=moderator.client_id
        )

    async def mute_user(
        self, room: Room, client_id: str, kind: MediaKind, muted: bool, *, moderator: str = ""
    ) -> Json:
        """Hard-mute (or release) one kind of one other participant."""
        wire = hard_mute_user_event(kind, muted)
        target = room.participants.get(client_id)
        if target is None or target.client_id == moderator:
            raise RequestRefused(
                f"{wire.WIRE}: no other participant {client_id[:64]!r} in the room",
                ErrorCode.INVALID_PARAMETERS,
            )
        kinds = self.of(room).hard.setdefault(target.client_id, set())
        if (kind in kinds) == muted:
            state = "hard-muted" if muted else "not hard-muted"
            raise RequestRefused(f"{wire.WIRE}: its {kind} is {state} already", ErrorCode.ALREADY_IN_STATE)
        if muted:
            kinds.add(kind)
            await self._silence(room, target, kind)
        else:
            kinds.discard(kind)
        log.info(
            "user_hard_muted",
            room=room.room_id,
            moderator=moderator or None,
            user=target.name,
            user_id=target.client_id,
            kind=kind,
            muted=muted,
        )
        msg = f"{kind} {'hard-muted' if muted else 'released'}"
        await self.outbox.send(target, wire(client_id=target.client_id, moderator=moderator, msg=msg))
        return Ack(msg=msg, fields={"clientId": target.client_id}).to_payload()

    async def _silence(self, room: Room, participant: Participant, kind: MediaKind) -> None:
        """The server's view follows at once; the others hear the usual relay."""
        if getattr(participant, f"{kind}_muted"):
            return
        setattr(participant, f"{kind}_muted", True)
        relay = UserMuteChanged(
            kind=kind, muted=True, client_id=participant.client_id, user=participant.user_info()
        )
        await self.outbox.broadcast(room, relay, exclude=participant.client_id)

    # ------------------------------------------------------------------ recording

    async def _on_record(self, session: Session, event: StartRecord) -> Json:
        room, moderator = self._moderator(session, ErrorCode.RECORD_NOT_PERMITTED, event.WIRE)
        return await self.record(room, event.ON, moderator=moderator.client_id)

    async def record(self, room: Room, on: bool, *, moderator: str = "") -> Json:
        """Turn the room's recording notice on or off."""
        state = self.of(room)
        if on and state.recording_by is not None:
            raise RequestRefused("the room is being recorded already", ErrorCode.RECORDING_ALREADY_ON)
        if not on and state.recording_by is None:
            raise RequestRefused("the room is not being recorded", ErrorCode.ALREADY_IN_STATE)
        state.recording_by = moderator if on else None
        log.info("recording_changed", room=room.room_id, moderator=moderator or None, recording=on)
        msg = "Room is being recorded" if on else "Room recording stopped"
        notice = (RoomRecordOn if on else RoomRecordOff)(moderator=moderator, msg=msg)
        await self.outbox.broadcast(room, notice, exclude=moderator)
        return Ack(msg=msg).to_payload()

    # ------------------------------------------------------------------ dropping

    async def _on_drop(self, session: Session, event: DropRequest) -> Json | None:
        if event.leave:
            return await self._plain[DropRequest](session, event)
        room, moderator = self._moderator(session, ErrorCode.DROP_NOT_PERMITTED, "drop")
        wanted = (
            [p.client_id for p in room.others(moderator.client_id)]
            if event.all
            else list(event.client_ids or ())
        )
        found = [room.participants[c] for c in wanted if c in room.participants and c != moderator.client_id]
        missing = [c for c in wanted if c not in {p.client_id for p in found}]
        if not found and not event.all:
            raise RequestRefused(
                "drop: none of 'clientIds' is another participant of the room", ErrorCode.INVALID_PARAMETERS
            )
        for target in found:
            await self.drop(room, target, moderator=moderator.client_id)
        return Ack(
            msg="success", fields={"clientIds": [p.client_id for p in found], "notFound": missing[:16]}
        ).to_payload()

    async def drop_by_server(self, room_id: str, client_id: str) -> None:
        """The application server drops a participant (REST); ClientNotFound if not there."""
        room = self.rooms.get(room_id)
        target = room.participants.get(client_id)
        if target is None:
            raise ClientNotFound(f"no participant {client_id!r} in room {room_id!r}")
        await self.drop(room, target, moderator="")

    async def drop(self, room: Room, target: Participant, *, moderator: str) -> None:
        """End ``target``'s session: tell it why, remove it, close its socket soon after."""
        session = None if target.away else self.presences.sessions.get(target.sid)
        log.info(
            "participant_dropped",
            room=room.room_id,
            moderator=moderator or None,
            user=target.name,
            user_id=target.client_id,
            connected=session is not None,
        )
        if session is not None:
            session.left = True  # its socket closing now is not a network fault
            await self.outbox.emit(session.sid, RoomDisconnected(moderator=moderator))
        self.of(room).hard.pop(target.client_id, None)
        await self.presences.depart(room, target, cause=DROP_CAUSE)
        if session is not None:
            self.tasks.spawn(
                self.presences.disconnect_later(session, DROP_GRACE_S), name=f"dropped-{session.sid}"
            )

    def forget(self, room_id: str) -> None:
        """A deleted room's state."""
        self._state.pop(room_id, None)
