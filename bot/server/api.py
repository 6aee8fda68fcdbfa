"""What the REST API and the metrics read of a room server, as a protocol.

:mod:`.rest` and :mod:`.metrics` are typed against :class:`RoomApi`, never against
:class:`~.app.RoomServer`, so the server composes them without an import circle (app -> rest,
app -> metrics, and neither back). Any object with these members can serve the REST API: a
test double, or a server of another shape.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from bot.proto import MediaKind

from .rooms import RoomRegistry
from .stats import Failures, SignallingStats

Json = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class MediaCounts:
    """What the media side did, for the metrics."""

    forwarded_legs: int
    """Subscribe legs whose media is up now."""
    packets: int
    """Encoded packets sent to subscribers, closed legs included."""
    bytes: int
    """Their payload bytes (before RTP)."""


class RoomApi(Protocol):
    """A room server as REST and the metrics see it."""

    @property
    def app_id(self) -> str: ...

    @property
    def app_key(self) -> str: ...

    @property
    def registry(self) -> CollectorRegistry:
        """The server's own Prometheus families (``GET /metrics`` serves them)."""

    @property
    def rooms(self) -> RoomRegistry: ...

    @property
    def stats(self) -> SignallingStats:
        """Joins, refusals and bandwidth verdicts so far."""

    @property
    def failures(self) -> Failures:
        """Unexpected exceptions survived, by where."""

    def media_counts(self) -> MediaCounts: ...

    def create_room(self, name: str, settings: Json | None = None, owner_ref: str = "") -> Json: ...

    def delete_room(self, room_id: str) -> Awaitable[None]: ...

    def mint_token(
        self,
        room_id: str,
        name: str,
        role: str = "participant",
        user_ref: str = "",
        *,
        data: Json | None = None,
        host: str | None = None,
    ) -> str: ...

    def room_view(self, room_id: str) -> Json: ...

    def drop_connection(self, room_id: str, client_id: str) -> Awaitable[None]: ...

    def drop_participant(self, room_id: str, client_id: str) -> Awaitable[None]: ...

    def hard_mute(
        self, room_id: str, muted: bool, *, client_id: str | None = None, kind: MediaKind = "audio"
    ) -> Awaitable[Json]: ...

    def set_recording(self, room_id: str, on: bool) -> Awaitable[Json]: ...

    def inject_bandwidth(
        self, room_id: str, client_ids: list[str], *, kbps: float | None = None, restored: bool = False
    ) -> Awaitable[None]: ...
