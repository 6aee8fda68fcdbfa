"""Active-talker requests (client -> server): the talker count, and pinning (moderators).

Wire names as EnableX's SDKs call them (``setTalkerCount``, ``getTalkerCount``, ``pinUsers``,
``unpinUsers``); the list itself is the server's ``active-talkers-updated``
(:class:`~bot.proto.events.notices.ActiveTalkersUpdated`). docs/protocol/active-talkers.md has
the payloads and acks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .._fields import Fields
from ..errors import ErrorCode, RemoteProtocolError
from .common import NoArgs

TALKERS_LIMIT = 12
"""No EnableX room has more active talkers (``max_active_talkers`` 1-12); the room's own
maximum is checked by the server."""
PIN_LIMIT = 100
"""Client ids one pin request may name."""
CLIENT_ID_LIMIT = 128


@dataclass(frozen=True, kw_only=True)
class SetTalkerCount:
    """``setTalkerCount {numTalkers}``: how many talkers this participant's list holds (0: an
    empty list, audio only). Ack ``{result: 0, numTalkers}``."""

    WIRE: ClassVar[str] = "setTalkerCount"

    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.count <= TALKERS_LIMIT:
            raise RemoteProtocolError(
                f"setTalkerCount: numTalkers must be 0-{TALKERS_LIMIT}, got {self.count}",
                ErrorCode.INVALID_PARAMETERS,
            )

    @classmethod
    def from_payload(cls, payload: object) -> SetTalkerCount:
        return cls(count=Fields(payload, "setTalkerCount").integer("numTalkers"))

    def to_payload(self) -> dict[str, int]:
        return {"numTalkers": self.count}


@dataclass(frozen=True, kw_only=True)
class GetTalkerCount(NoArgs):
    """``getTalkerCount`` (no argument): ack ``{result: 0, numTalkers}``."""

    WIRE: ClassVar[str] = "getTalkerCount"


def _client_ids(payload: object, where: str) -> tuple[str, ...]:
    ids = Fields(payload, where).array("clients")
    if not ids or len(ids) > PIN_LIMIT:
        raise RemoteProtocolError(
            f"{where}: clients must list 1-{PIN_LIMIT} client ids, got {len(ids)}",
            ErrorCode.INVALID_PARAMETERS,
        )
    for client_id in ids:
        if not isinstance(client_id, str) or not 0 < len(client_id) <= CLIENT_ID_LIMIT:
            raise RemoteProtocolError(
                f"{where}: every entry of clients must be a client id (a short string)",
                ErrorCode.INVALID_PARAMETERS,
            )
    return tuple(dict.fromkeys(ids))


@dataclass(frozen=True, kw_only=True)
class PinUsers:
    """``pinUsers {clients: [clientId, ...]}`` (moderators): these participants head every
    list, in this order, talking or not. Ack ``{result: 0, clients}`` (all pinned now)."""

    WIRE: ClassVar[str] = "pinUsers"

    clients: tuple[str, ...]

    @classmethod
    def from_payload(cls, payload: object) -> PinUsers:
        return cls(clients=_client_ids(payload, "pinUsers"))

    def to_payload(self) -> dict[str, list[str]]:
        return {"clients": list(self.clients)}


@dataclass(frozen=True, kw_only=True)
class UnpinUsers:
    """``unpinUsers {clients: [...]}`` (moderators). Ack ``{result: 0, clients}`` (still pinned)."""

    WIRE: ClassVar[str] = "unpinUsers"

    clients: tuple[str, ...]

    @classmethod
    def from_payload(cls, payload: object) -> UnpinUsers:
        return cls(clients=_client_ids(payload, "unpinUsers"))

    def to_payload(self) -> dict[str, list[str]]:
        return {"clients": list(self.clients)}
