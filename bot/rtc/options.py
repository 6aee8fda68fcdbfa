"""The option dictionaries of Flutter's ``joinRoom(token, localInfo, roomInfo, advanceOptions)``.

Applications pass the same camelCase dictionaries they would pass to the Flutter plugin; they are
read here, once, into snake_case dataclasses, so a typo'd type fails at ``join_room`` with a
message naming the key instead of surfacing later as a wrong publish request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.proto import ErrorCode

from .errors import RoomError


def _read(d: Mapping[str, Any], where: str, key: str, kind: type, default: Any) -> Any:
    value = d.get(key, default)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise RoomError(
            ErrorCode.INVALID_PARAMETERS,
            f"{where}['{key}'] must be {kind.__name__}, got {type(value).__name__}",
        )
    return value


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RoomError(
            ErrorCode.INVALID_PARAMETERS,
            f"{where} must be a dict, got {type(value).__name__}",
        )
    return value


@dataclass(frozen=True, kw_only=True)
class LocalInfo:
    """Flutter ``localInfo``: what to publish and in which state."""

    audio: bool = True
    """Publish an audio track."""
    video: bool = True
    """Publish a video track."""
    data: bool = False
    """Ask for a data track (passed through in ``publish``; no data channel is opened)."""
    audio_muted: bool = False
    """Join with audio muted (``audioMuted``): nothing is sent for it until unmuted."""
    video_muted: bool = False
    """Join with video muted (``videoMuted``)."""
    name: str | None = None
    """Stream name shown to others; defaults to the participant's name from the token."""
    max_video_bw: int | None = None
    """``maxVideoBW`` (kbps): lowers the room's cap for our stream, never raises it."""
    min_video_bw: int | None = None
    """``minVideoBW`` (kbps): raises the room's floor for our stream, never above the cap."""

    @classmethod
    def from_dict(cls, value: object) -> LocalInfo:
        d = _mapping(value, "local_info")
        w = "local_info"
        return cls(
            audio=_read(d, w, "audio", bool, True),
            video=_read(d, w, "video", bool, True),
            data=_read(d, w, "data", bool, False),
            audio_muted=_read(d, w, "audioMuted", bool, False),
            video_muted=_read(d, w, "videoMuted", bool, False),
            name=_read(d, w, "name", str, None),
            max_video_bw=_read(d, w, "maxVideoBW", int, None),
            min_video_bw=_read(d, w, "minVideoBW", int, None),
        )

    @property
    def publishes(self) -> bool:
        return self.audio or self.video


DEFAULT_TIMEOUT_INTERVAL_S = 15.0
"""How long reconnecting may take, in all, when ``room_info`` does not say."""
MILLISECONDS_FROM = 1000
"""A ``timeout_interval`` this large is in milliseconds: the iOS/Android docs give the key in ms,
and an app ported from them would otherwise wait hours. Nobody means a 16-minute budget."""


@dataclass(frozen=True, kw_only=True)
class RoomInfo:
    """Flutter ``roomInfo``: how to connect and how to survive the network."""

    force_turn: bool = False
    """``forceTurn``: relay-only ICE; fail with 1160 when no relay candidate can be gathered."""
    allow_reconnect: bool = True
    """``allow_reconnect``: rejoin after a loss; when false the first loss ends the session (2002)."""
    number_of_attempts: int = 3
    """``number_of_attempts``: rejoin tries before giving up with 1165 (0: give up at once)."""
    timeout_interval: float = DEFAULT_TIMEOUT_INTERVAL_S
    """``timeout_interval`` (seconds): the overall budget from the loss to a completed rejoin;
    past it reconnection gives up with 1166. Values of 1000 and more are read as milliseconds."""
    audio_only: bool = False
    """``audio_only``: publish no video whatever ``local_info`` says."""

    @classmethod
    def from_dict(cls, value: object) -> RoomInfo:
        d = _mapping(value, "room_info")
        w = "room_info"
        timeout = d.get("timeout_interval")
        if timeout is not None and (
            not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0
        ):
            raise RoomError(
                ErrorCode.INVALID_PARAMETERS,
                f"room_info['timeout_interval'] must be a positive number of seconds, got {timeout!r}",
            )
        seconds = DEFAULT_TIMEOUT_INTERVAL_S if timeout is None else float(timeout)
        if seconds >= MILLISECONDS_FROM:
            seconds /= 1000.0
        attempts = _read(d, w, "number_of_attempts", int, 3)
        if attempts < 0:
            raise RoomError(
                ErrorCode.INVALID_PARAMETERS,
                f"room_info['number_of_attempts'] must be 0 or more, got {attempts}",
            )
        return cls(
            force_turn=_read(d, w, "forceTurn", bool, False),
            allow_reconnect=_read(d, w, "allow_reconnect", bool, True),
            number_of_attempts=attempts,
            timeout_interval=seconds,
            audio_only=_read(d, w, "audio_only", bool, False),
        )
