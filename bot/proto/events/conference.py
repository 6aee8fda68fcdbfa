"""A room's clock and its end: ``conference-remaining-duration`` before a room with
``settings.duration`` runs out, and ``room-disconnected`` when the server ends a participant's
session (the room expired, or a waiting participant was denied)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .._fields import Fields
from ..errors import ErrorCode
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
class RoomDisconnected:
    """``room-disconnected {cause: {cause, msg}, moderator?}``: the server ends this session (a
    moderator dropped it: 2001, the room expired: 2003, a waiting participant was denied: 4130).
    The shape is what the Web SDK hands its app in ``room-disconnected.message`` (PROTOCOL.md
    section 6); ``cause.code`` is read too. The client leaves and does not reconnect."""

    WIRE: ClassVar[str] = "room-disconnected"

    cause: int = int(ErrorCode.DISCONNECTED_BY_MODERATOR)
    msg: str = "disconnected-by-moderator"
    moderator: str = ""

    @property
    def code(self) -> int:
        return self.cause

    @classmethod
    def from_payload(cls, payload: object) -> RoomDisconnected:
        outer = Fields(payload, cls.WIRE)
        inner = Fields(outer.mapping("cause"), f"{cls.WIRE}.cause")
        key = "cause" if "cause" in inner.payload else "code"
        return cls(
            cause=inner.integer(key, int(ErrorCode.UNEXPECTED_DISCONNECT)),
            msg=str(inner.text("msg", "") or "disconnected")[:MAX_CAUSE_TEXT],
            moderator=str(outer.text("moderator", ""))[:MAX_CAUSE_TEXT],
        )

    def to_payload(self) -> Json:
        out: Json = {"cause": {"cause": self.cause, "msg": self.msg}}
        if self.moderator:
            out["moderator"] = self.moderator
        return out

    def as_callback(self) -> Json:
        """What ``on_room_disconnected`` gets: ``{cause: code, msg}`` (and ``moderator``)."""
        out: Json = {"cause": self.cause, "msg": self.msg}
        if self.moderator:
            out["moderator"] = self.moderator
        return out
