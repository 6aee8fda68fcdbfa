"""The waiting room (rooms with ``knock`` or ``wait_for_moderator``): who waits, who lets them in.

Wire names are EnableX's (the Web SDK's ``room-awaited``/``user-awaited``/``room-allowed``
events and its ``approveAwaitedUser``/``denyAwaitedUser`` methods); the payload shapes are this
project's, documented in ``docs/protocol/admission.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from .._fields import Fields
from ..errors import ErrorCode, RemoteProtocolError
from .common import Json, NoArgs, UserInfo

MAX_CLIENT_ID = 64
"""Longer ``clientId`` values are refused before anything is looked up (ours are 32 hex digits)."""

AwaitReason = Literal["knock", "wait_for_moderator"]
AWAIT_REASONS: tuple[str, ...] = ("knock", "wait_for_moderator")


def client_id_field(payload: object, where: str) -> str:
    """The ``clientId`` a moderator request names: a non-empty string of at most 64 characters."""
    value = Fields(payload, where).text("clientId")
    if not value or len(value) > MAX_CLIENT_ID:
        raise RemoteProtocolError(
            f"{where}: field 'clientId' must be 1 to {MAX_CLIENT_ID} characters", ErrorCode.MALFORMED_REQUEST
        )
    return str(value)


@dataclass(frozen=True, kw_only=True)
class ApproveAwaitedUser:
    """``approveAwaitedUser {clientId}`` (moderator): let a waiting participant in."""

    WIRE: ClassVar[str] = "approveAwaitedUser"

    client_id: str

    @classmethod
    def from_payload(cls, payload: object) -> ApproveAwaitedUser:
        return cls(client_id=client_id_field(payload, cls.WIRE))

    def to_payload(self) -> Json:
        return {"clientId": self.client_id}


@dataclass(frozen=True, kw_only=True)
class DenyAwaitedUser:
    """``denyAwaitedUser {clientId}`` (moderator): turn a waiting participant away."""

    WIRE: ClassVar[str] = "denyAwaitedUser"

    client_id: str

    @classmethod
    def from_payload(cls, payload: object) -> DenyAwaitedUser:
        return cls(client_id=client_id_field(payload, cls.WIRE))

    def to_payload(self) -> Json:
        return {"clientId": self.client_id}


@dataclass(frozen=True, kw_only=True)
class RoomAwaited:
    """``room-awaited {event_type}``: the token was accepted, but this participant waits (for a
    moderator's approval, ``knock``, or for a moderator to arrive, ``wait_for_moderator``)."""

    WIRE: ClassVar[str] = "room-awaited"

    event_type: AwaitReason

    @classmethod
    def from_payload(cls, payload: object) -> RoomAwaited:
        kind = Fields(payload, cls.WIRE).text("event_type")
        if kind not in AWAIT_REASONS:
            raise RemoteProtocolError(f"{cls.WIRE}: unknown event_type {str(kind)[:32]!r}")
        return cls(event_type=kind)

    def to_payload(self) -> Json:
        return {"event_type": self.event_type}


@dataclass(frozen=True, kw_only=True)
class UserAwaited:
    """``user-awaited {...user}`` to moderators: someone knocks (the user as in ``user-connected``)."""

    WIRE: ClassVar[str] = "user-awaited"

    user: UserInfo

    @classmethod
    def from_payload(cls, payload: object) -> UserAwaited:
        return cls(user=UserInfo.from_payload(payload, cls.WIRE))

    def to_payload(self) -> Json:
        return self.user.to_payload()


@dataclass(frozen=True, kw_only=True)
class RoomAllowed(NoArgs):
    """``room-allowed {}``: the wait is over; ``room-connected`` follows."""

    WIRE: ClassVar[str] = "room-allowed"
    PAYLOAD_OPTIONAL: ClassVar[bool] = False
    SENDS_EMPTY_OBJECT: ClassVar[bool] = True
