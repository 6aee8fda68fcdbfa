"""A room's clock and its end: ``conference-remaining-duration`` before a room with
``settings.duration`` runs out, and ``room-disconnected`` when the server ends a participant's
session (the room expired, or a waiting participant was denied)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .._fields import Fields
from .common import Json

MAX_CAUSE_TEXT = 200


@dataclass(frozen=True, kw_only=True)
class ConferenceRemainingDuration:
    """``conference-remaining-duration {timeLeft}``: whole minutes left (rounded up)."""

    WIRE: ClassVar[str] = "conference-remaining-duration"

    time_left: int

    @classmethod
    def from_payload(cls, payload: object) -> ConferenceRemainingDuration:
        return cls(time_left=Fields(payload, cls.WIRE).integer("timeLeft"))

    def to_payload(self) -> Json:
        return {"timeLeft": self.time_left}


@dataclass(frozen=True, kw_only=True)
class RoomDisconnectedNotice:
    """``room-disconnected {cause: {cause, msg}}``: the server ends this session (the shape the
    Web SDK hands its app in ``room-disconnected.message``); the socket closes right after."""

    WIRE: ClassVar[str] = "room-disconnected"

    cause: int
    msg: str

    @classmethod
    def from_payload(cls, payload: object) -> RoomDisconnectedNotice:
        inner = Fields(Fields(payload, cls.WIRE).mapping("cause"), f"{cls.WIRE}.cause")
        return cls(cause=inner.integer("cause"), msg=str(inner.text("msg", ""))[:MAX_CAUSE_TEXT])

    def to_payload(self) -> Json:
        return {"cause": {"cause": self.cause, "msg": self.msg}}

    def as_callback(self) -> Json:
        """What ``on_room_disconnected`` gets: ``{cause: code, msg}``."""
        return {"cause": self.cause, "msg": self.msg}
