"""Lecture mode (``settings.mode: lecture``): participants publish only while they hold the floor.

A participant asks with ``requestFloor`` (moderators hear ``floor-requested``); a moderator
answers ``grantFloor`` / ``denyFloor`` and may later ``releaseFloor``. The participant hears
``floor-granted`` (it may publish now), ``floor-denied`` or ``floor-released`` (its streams are
removed: the others hear ``onRemoveStream``). Until granted, a participant's ``publish`` is
refused with 1168. Moderators publish freely and cannot request the floor. Lecture-mode
moderators find the open requests in ``room-connected.raisedHands`` and the granted ones in
``approvedHands``. Wire notes: ``docs/protocol/admission.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog

from bot.proto import (
    Ack,
    DenyFloor,
    ErrorCode,
    FloorDenied,
    FloorGranted,
    FloorReleased,
    FloorRequested,
    GrantFloor,
    ReleaseFloor,
    RequestFloor,
)

from .errors import RequestRefused
from .outbox import Outbox
from .presence import Handler, Presences, Session
from .rooms import Participant, Room

log = structlog.get_logger(__name__)

Json = dict[str, Any]
FLOOR_LOG = {"grant": "floor_granted", "deny": "floor_denied", "release": "floor_released"}


def is_lecture(room: Room) -> bool:
    return room.settings.get("mode") == "lecture"


@dataclass
class RoomFloor:
    """One lecture room's hands: asked (in order) and granted, by clientId."""

    raised: dict[str, str] = field(default_factory=dict)  # clientId -> name
    granted: dict[str, str] = field(default_factory=dict)


class Floor:
    """The floor of every lecture room on one server."""

    def __init__(self, *, presences: Presences, outbox: Outbox) -> None:
        self.presences = presences
        self.outbox = outbox
        self._rooms: dict[str, RoomFloor] = {}

    def handlers(self) -> dict[type, Handler]:
        return {
            RequestFloor: self._on_request,
            GrantFloor: self._on_moderator,
            DenyFloor: self._on_moderator,
            ReleaseFloor: self._on_moderator,
        }

    def _floor(self, room: Room) -> RoomFloor:
        floor = self._rooms.setdefault(room.room_id, RoomFloor())
        for hands in (floor.raised, floor.granted):  # forget who left
            for client_id in [c for c in hands if c not in room.participants]:
                del hands[client_id]
        return floor

    def check_publish(self, room: Room, participant: Participant) -> None:
        """Raise 1168 for a lecture-room participant without the floor."""
        if not is_lecture(room) or participant.role == "moderator":
            return
        if participant.client_id not in self._floor(room).granted:
            raise RequestRefused(
                "publish: lecture mode, request the floor first (requestFloor)", ErrorCode.NOT_PERMITTED
            )

    def hands(self, room: Room, viewer: Participant) -> Json:
        """``room-connected.raisedHands`` / ``approvedHands`` for a lecture-room moderator."""
        if not is_lecture(room) or viewer.role != "moderator":
            return {}
        floor = self._floor(room)
        return {
            "raisedHands": [{"clientId": c, "name": n} for c, n in floor.raised.items()],
            "approvedHands": [{"clientId": c, "name": n} for c, n in floor.granted.items()],
        }

    def _seat(self, session: Session, request: str) -> tuple[Room, Participant]:
        seat = self.presences.seat(session)
        if seat is None:
            raise RequestRefused("not in a room", ErrorCode.NOT_JOINED)
        if not is_lecture(seat[0]):
            raise RequestRefused(f"{request}: the room is not in lecture mode", ErrorCode.NOT_PERMITTED)
        return seat

    async def _on_request(self, session: Session, event: RequestFloor) -> Json:
        room, participant = self._seat(session, RequestFloor.WIRE)
        if participant.role != "participant":
            raise RequestRefused(
                f"requestFloor: a {participant.role} does not request the floor", ErrorCode.NOT_PERMITTED
            )
        floor = self._floor(room)
        if participant.client_id in floor.raised or participant.client_id in floor.granted:
            raise RequestRefused("requestFloor: already requested", ErrorCode.ALREADY_IN_STATE)
        floor.raised[participant.client_id] = participant.name
        log.info("floor_requested", room=room.room_id, user=participant.name, user_id=participant.client_id)
        notice = FloorRequested(client_id=participant.client_id, name=participant.name)
        for moderator in [p for p in room.participants.values() if p.role == "moderator"]:
            await self.outbox.send(moderator, notice)
        return Ack(fields={"msg": "floor requested"}).to_payload()

    async def _on_moderator(self, session: Session, event: GrantFloor | DenyFloor | ReleaseFloor) -> Json:
        room, moderator = self._seat(session, event.WIRE)
        if moderator.role != "moderator":
            raise RequestRefused(f"{event.WIRE}: only a moderator may do this", ErrorCode.NOT_PERMITTED)
        floor = self._floor(room)
        target = room.participants.get(event.client_id)
        held = floor.granted if event.ACTION == "release" else floor.raised
        if target is None or event.client_id not in held:
            state = "holds the floor" if event.ACTION == "release" else "has requested the floor"
            raise RequestRefused(f"{event.WIRE}: no participant {event.client_id[:64]!r} {state}")
        name = held.pop(event.client_id)
        fields = {"client_id": target.client_id, "name": name, "moderator_id": moderator.client_id}
        if event.ACTION == "grant":
            floor.granted[target.client_id] = name
            await self.outbox.send(target, FloorGranted(**fields))
        elif event.ACTION == "deny":
            await self.outbox.send(target, FloorDenied(**fields))
        else:
            await self.outbox.send(target, FloorReleased(**fields))
            for stream in [s for s in room.streams.values() if s.client_id == target.client_id]:
                await self.presences.remove_stream(room, stream, cause="floor_released", retire=True)
        log.info(
            FLOOR_LOG[event.ACTION],
            room=room.room_id,
            user=name,
            user_id=target.client_id,
            moderator=moderator.client_id,
        )
        return Ack(fields={"clientId": target.client_id, "action": event.WIRE}).to_payload()
