"""The waiting room: rooms created with ``settings.knock`` (a moderator approves each
participant) or ``settings.wait_for_moderator`` (participants wait until a moderator is in).

A participant whose token is accepted in such a room is acked ``{result: 0, clientId}`` as
usual, then hears ``room-awaited {event_type}`` instead of ``room-connected``; nobody else sees
it in the room. Moderators hear ``user-awaited`` (and find the waiting list in their
``room-connected.awaitedParticipants``). ``approveAwaitedUser`` sends the waiter
``room-allowed`` and lets it in as any joiner (``user-connected`` to the others, its
``room-connected``); ``denyAwaitedUser`` sends it ``room-disconnected`` (4130) and closes its
socket. Moderators never wait. A waiter that closes its socket is forgotten. Wire notes:
``docs/protocol/admission.md``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from bot.proto import (
    Ack,
    ApproveAwaitedUser,
    AwaitReason,
    DenyAwaitedUser,
    ErrorCode,
    RoomAllowed,
    RoomAwaited,
    RoomDisconnected,
    UserAwaited,
)

from .errors import ClientNotFound, RequestRefused
from .outbox import Outbox
from .presence import Handler, Presences, Session
from .rooms import Participant, Room
from .tasks import Tasks

log = structlog.get_logger(__name__)

Json = dict[str, Any]
Enter = Callable[[Session, Room, Participant], Awaitable[None]]

DENIED_CLOSE_S = 0.5
"""Time for ``room-disconnected`` to reach a denied waiter before its socket is closed."""


@dataclass
class Waiter:
    session: Session
    participant: Participant
    reason: AwaitReason


def await_reason(room: Room, participant: Participant) -> AwaitReason | None:
    """Why this joiner must wait, or None. ``knock`` wins over ``wait_for_moderator`` (a knock
    needs a moderator anyway); moderators never wait."""
    if participant.role == "moderator":
        return None
    if room.settings.get("knock") is True:
        return "knock"
    if room.settings.get("wait_for_moderator") is True and not _moderator_in(room):
        return "wait_for_moderator"
    return None


def _moderator_in(room: Room) -> bool:
    return any(p.role == "moderator" and not p.away for p in room.participants.values())


class WaitingRoom:
    """Who waits in which room, and the moderator requests that decide."""

    def __init__(self, *, presences: Presences, outbox: Outbox, tasks: Tasks) -> None:
        self.presences = presences
        self.outbox = outbox
        self.tasks = tasks
        self.enter: Enter | None = None
        """How an approved waiter joins (set by the signalling adapter: ``Joining.enter``)."""
        self._rooms: dict[str, dict[str, Waiter]] = {}

    def handlers(self) -> dict[type, Handler]:
        return {ApproveAwaitedUser: self._on_approve, DenyAwaitedUser: self._on_deny}

    def waiting(self, room: Room) -> list[Waiter]:
        return list(self._rooms.get(room.room_id, {}).values())

    def is_waiting(self, sid: str) -> bool:
        return any(w.session.sid == sid for waiters in self._rooms.values() for w in waiters.values())

    def awaited_list(self, room: Room, viewer: Participant) -> Json:
        """``room-connected.awaitedParticipants`` for a moderator (others see an empty list)."""
        if viewer.role != "moderator":
            return {}
        return {"awaitedParticipants": [w.participant.user_info().to_payload() for w in self.waiting(room)]}

    async def hold(self, session: Session, room: Room, participant: Participant, reason: AwaitReason) -> Json:
        """Put an accepted joiner in the waiting room; returns the token ack."""
        self.presences.end_handshake(session)  # a waiter is no idle socket: no handshake timeout
        session.room_id = room.room_id
        self._rooms.setdefault(room.room_id, {})[participant.client_id] = Waiter(session, participant, reason)
        log.info(
            "participant_awaited",
            room=room.room_id,
            user=participant.name,
            user_id=participant.client_id,
            reason=reason,
        )
        self.tasks.spawn(
            self._announce(room, participant, reason), name=f"room-awaited-{participant.client_id}"
        )
        return Ack(fields={"clientId": participant.client_id, "connectedIP": session.remote_ip}).to_payload()

    async def _announce(self, room: Room, participant: Participant, reason: AwaitReason) -> None:
        await asyncio.sleep(0)  # after the token ack (as ``Joining._announce``)
        await self.outbox.emit(participant.sid, RoomAwaited(event_type=reason))
        if reason == "knock":
            for moderator in self._moderators(room):
                await self.outbox.send(moderator, UserAwaited(user=participant.user_info()))

    def _moderators(self, room: Room) -> list[Participant]:
        return [p for p in room.participants.values() if p.role == "moderator"]

    async def entered(self, room: Room, participant: Participant) -> None:
        """Someone joined: a moderator lets ``wait_for_moderator`` waiters in and hears of the
        knocking ones (after its ``room-connected``)."""
        if participant.role != "moderator":
            return
        for waiter in self.waiting(room):
            if waiter.reason == "wait_for_moderator":
                await self._admit(room, waiter, by=participant.client_id)
            else:
                await self.outbox.send(participant, UserAwaited(user=waiter.participant.user_info()))

    def forget(self, sid: str) -> None:
        """A waiter's socket closed: it leaves the waiting room."""
        for room_id, waiters in list(self._rooms.items()):
            for client_id, waiter in list(waiters.items()):
                if waiter.session.sid == sid:
                    del waiters[client_id]
                    log.info(
                        "awaited_user_left", room=room_id, user=waiter.participant.name, user_id=client_id
                    )
            if not waiters:
                del self._rooms[room_id]

    async def end_room(self, room: Room, notice: RoomDisconnected) -> None:
        """The room ended: every waiter hears ``notice`` and its socket closes."""
        for waiter in self._rooms.pop(room.room_id, {}).values():
            await self._send_away(waiter, notice)

    # ------------------------------------------------------------------ moderator requests

    def _decide(self, session: Session, client_id: str, request: str) -> tuple[Room, Participant, Waiter]:
        seat = self.presences.seat(session)
        if seat is None:
            raise RequestRefused("not in a room", ErrorCode.NOT_JOINED)
        room, moderator = seat
        if moderator.role != "moderator":
            raise RequestRefused(f"{request}: only a moderator may do this", ErrorCode.NOT_PERMITTED)
        waiter = self._rooms.get(room.room_id, {}).get(client_id)
        if waiter is None:
            raise RequestRefused(f"{request}: nobody with clientId {client_id[:64]!r} is waiting")
        return room, moderator, waiter

    async def _on_approve(self, session: Session, event: ApproveAwaitedUser) -> Json:
        room, moderator, waiter = self._decide(session, event.client_id, ApproveAwaitedUser.WIRE)
        await self._admit(room, waiter, by=moderator.client_id)
        return Ack(fields={"clientId": event.client_id, "msg": "approved"}).to_payload()

    async def _on_deny(self, session: Session, event: DenyAwaitedUser) -> Json:
        room, moderator, waiter = self._decide(session, event.client_id, DenyAwaitedUser.WIRE)
        await self._deny(room, waiter, by=moderator.client_id)
        return Ack(fields={"clientId": event.client_id, "msg": "denied"}).to_payload()

    async def decide(self, room: Room, client_id: str, *, approve: bool, by: str) -> None:
        """Approve or deny a waiter without a moderator (the emulator API); ClientNotFound when
        nobody with that clientId waits in the room."""
        waiter = self._rooms.get(room.room_id, {}).get(client_id)
        if waiter is None:
            raise ClientNotFound(f"nobody with clientId {client_id[:64]!r} waits in room {room.room_id!r}")
        if approve:
            await self._admit(room, waiter, by=by)
        else:
            await self._deny(room, waiter, by=by)

    async def _deny(self, room: Room, waiter: Waiter, *, by: str) -> None:
        self._rooms.get(room.room_id, {}).pop(waiter.participant.client_id, None)
        log.info(
            "awaited_user_denied",
            room=room.room_id,
            user=waiter.participant.name,
            user_id=waiter.participant.client_id,
            moderator=by,
        )
        notice = RoomDisconnected(cause=int(ErrorCode.AWAIT_DENIED), msg="denied-by-moderator")
        await self._send_away(waiter, notice)

    async def _admit(self, room: Room, waiter: Waiter, *, by: str) -> None:
        waiters = self._rooms.get(room.room_id, {})
        waiters.pop(waiter.participant.client_id, None)
        if not waiters:
            self._rooms.pop(room.room_id, None)
        if waiter.session.sid not in self.presences.sessions or self.enter is None:
            return  # its socket closed meanwhile
        log.info(
            "awaited_user_approved",
            room=room.room_id,
            user=waiter.participant.name,
            user_id=waiter.participant.client_id,
            moderator=by,
            reason=waiter.reason,
        )
        await self.outbox.emit(waiter.session.sid, RoomAllowed())
        await self.enter(waiter.session, room, waiter.participant)

    async def close_room(self, room: Room) -> None:
        """The room is deleted: the waiters' sockets close (their joins fail)."""
        for waiter in self._rooms.pop(room.room_id, {}).values():
            waiter.session.left = True
            await self.outbox.disconnect(waiter.session.sid)

    async def _send_away(self, waiter: Waiter, notice: RoomDisconnected) -> None:
        session = waiter.session
        await self.outbox.emit(session.sid, notice)
        session.left = True
        session.timers.append(
            self.tasks.spawn(
                self.presences.disconnect_later(session, DENIED_CLOSE_S), name=f"send-away-{session.sid}"
            )
        )
