"""Lecture mode's floor control: a participant asks for the floor, a moderator grants, denies or
releases it. Wire names follow the EnableX SDK methods (``requestFloor``, ``grantFloor``,
``denyFloor``, ``releaseFloor``) and its ``floor-*`` events; shapes in ``docs/protocol/admission.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from .._fields import Fields
from .common import Json, NoArgs
from .waiting_room import client_id_field

FloorAction = Literal["grant", "deny", "release"]


@dataclass(frozen=True, kw_only=True)
class RequestFloor(NoArgs):
    """``requestFloor`` (participant, no argument or ``{}``)."""

    WIRE: ClassVar[str] = "requestFloor"
    SENDS_EMPTY_OBJECT: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class _ModeratorFloorRequest:
    WIRE: ClassVar[str]
    ACTION: ClassVar[FloorAction]

    client_id: str

    @classmethod
    def from_payload(cls, payload: object) -> _ModeratorFloorRequest:
        return cls(client_id=client_id_field(payload, cls.WIRE))

    def to_payload(self) -> Json:
        return {"clientId": self.client_id}


@dataclass(frozen=True, kw_only=True)
class GrantFloor(_ModeratorFloorRequest):
    """``grantFloor {clientId}`` (moderator): that participant may publish now."""

    WIRE: ClassVar[str] = "grantFloor"
    ACTION: ClassVar[FloorAction] = "grant"


@dataclass(frozen=True, kw_only=True)
class DenyFloor(_ModeratorFloorRequest):
    """``denyFloor {clientId}`` (moderator): turn a floor request down."""

    WIRE: ClassVar[str] = "denyFloor"
    ACTION: ClassVar[FloorAction] = "deny"


@dataclass(frozen=True, kw_only=True)
class ReleaseFloor(_ModeratorFloorRequest):
    """``releaseFloor {clientId}`` (moderator): take the floor back; the stream is removed."""

    WIRE: ClassVar[str] = "releaseFloor"
    ACTION: ClassVar[FloorAction] = "release"


@dataclass(frozen=True, kw_only=True)
class _FloorNotice:
    WIRE: ClassVar[str]

    client_id: str
    name: str = ""
    moderator_id: str | None = None

    @classmethod
    def from_payload(cls, payload: object) -> _FloorNotice:
        f = Fields(payload, cls.WIRE)
        return cls(
            client_id=f.text("clientId"), name=f.text("name", ""), moderator_id=f.text("moderatorId", None)
        )

    def to_payload(self) -> Json:
        out: Json = {"clientId": self.client_id, "name": self.name}
        if self.moderator_id is not None:
            out["moderatorId"] = self.moderator_id
        return out


@dataclass(frozen=True, kw_only=True)
class FloorRequested(_FloorNotice):
    """``floor-requested {clientId, name}`` to moderators: a participant raised its hand."""

    WIRE: ClassVar[str] = "floor-requested"


@dataclass(frozen=True, kw_only=True)
class FloorGranted(_FloorNotice):
    """``floor-granted {clientId, name, moderatorId}`` to the participant."""

    WIRE: ClassVar[str] = "floor-granted"


@dataclass(frozen=True, kw_only=True)
class FloorDenied(_FloorNotice):
    """``floor-denied {clientId, name, moderatorId}`` to the participant."""

    WIRE: ClassVar[str] = "floor-denied"


@dataclass(frozen=True, kw_only=True)
class FloorReleased(_FloorNotice):
    """``floor-released {clientId, name, moderatorId}`` to the participant (its stream is gone)."""

    WIRE: ClassVar[str] = "floor-released"


FLOOR_REQUESTS = (RequestFloor, GrantFloor, DenyFloor, ReleaseFloor)
FLOOR_NOTICES = (FloorRequested, FloorGranted, FloorDenied, FloorReleased)
