"""The option dictionaries of Flutter's ``joinRoom(token, localInfo, roomInfo, advanceOptions)``.

Applications pass the same camelCase dictionaries they would pass to the Flutter plugin; they are
read here, once, into snake_case dataclasses, so a typo'd type fails at ``join_room`` with a
message naming the key instead of surfacing later as a wrong publish request. A field whose
dictionary key is spelled differently says so in ``metadata["key"]`` (the agent's YAML reads it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from bot.proto import ErrorCode, RoomConnected, StreamInfo

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
    """Chat and custom data may be sent (``send_message``/``send_user_data``; passed through in
    ``publish``; no WebRTC data channel is opened: the room relays over signalling)."""
    name: str | None = None
    """Stream name shown to others; defaults to the participant's name from the token."""
    audio_muted: bool = field(default=False, metadata={"key": "audioMuted"})
    """Join with audio muted (``audioMuted``): nothing is sent for it until unmuted."""
    video_muted: bool = field(default=False, metadata={"key": "videoMuted"})
    """Join with video muted (``videoMuted``)."""
    max_video_bw: int | None = field(default=None, metadata={"key": "maxVideoBW"})
    """``maxVideoBW`` (kbps): lowers the room's cap for our stream, never raises it."""
    min_video_bw: int | None = field(default=None, metadata={"key": "minVideoBW"})
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


DEFAULT_WAIT_TIMEOUT_S = 120.0
"""How long a join may wait in a waiting room when ``room_info`` does not say."""
DEFAULT_TIMEOUT_INTERVAL_S = 15.0
"""How long reconnecting may take, in all, when ``room_info`` does not say."""
MILLISECONDS_FROM = 1000
"""A ``timeout_interval`` this large is in milliseconds: the iOS/Android docs give the key in ms,
and an app ported from them would otherwise wait hours. Nobody means a 16-minute budget."""


@dataclass(frozen=True, kw_only=True)
class RoomInfo:
    """Flutter ``roomInfo``: how to connect and how to survive the network."""

    allow_reconnect: bool = True
    """``allow_reconnect``: rejoin after a loss; when false the first loss ends the session (2002)."""
    number_of_attempts: int = 3
    """``number_of_attempts``: rejoin tries before giving up with 1165 (0: give up at once)."""
    timeout_interval: float = DEFAULT_TIMEOUT_INTERVAL_S
    """``timeout_interval`` (seconds): the overall budget from the loss to a completed rejoin;
    past it reconnection gives up with 1166. Values of 1000 and more are read as milliseconds."""
    force_turn: bool = field(default=False, metadata={"key": "forceTurn"})
    """``forceTurn``: relay-only ICE; fail with 1160 when no relay candidate can be gathered."""
    audio_only: bool = False
    """``audio_only``: publish no video whatever ``local_info`` says."""
    wait_timeout_s: float = DEFAULT_WAIT_TIMEOUT_S
    """``wait_timeout_s``: how long to wait in a waiting room (knock / wait_for_moderator)
    before giving up with 4131; a moderator's denial ends it at once (4130)."""

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
        wait = d.get("wait_timeout_s", DEFAULT_WAIT_TIMEOUT_S)
        if not isinstance(wait, int | float) or isinstance(wait, bool) or not 0 < wait < float("inf"):
            raise RoomError(
                ErrorCode.INVALID_PARAMETERS,
                f"room_info['wait_timeout_s'] must be a positive number of seconds, got {wait!r}",
            )
        return cls(
            wait_timeout_s=float(wait),
            force_turn=_read(d, w, "forceTurn", bool, False),
            allow_reconnect=_read(d, w, "allow_reconnect", bool, True),
            number_of_attempts=attempts,
            timeout_interval=seconds,
            audio_only=_read(d, w, "audio_only", bool, False),
        )


SubscribeMode = Literal["all", "none", "audio", "talkers"]
SUBSCRIBE_MODES: tuple[str, ...] = get_args(SubscribeMode)


@dataclass(frozen=True, kw_only=True)
class SubscribeOptions:
    """What to receive of the others' streams: the ``EnxRtc`` constructor's ``subscribe``,
    ``max_video_subscriptions``, ``sink_factory`` and ``stats_interval_s`` (Python objects,
    hence constructor arguments and not ``join_room`` dictionaries).

    The Web SDK subscribes to every stream by itself; Flutter apps call ``subscribe`` from
    ``onStreamAdded``. ``"none"`` (the default) is Flutter's way: nothing is received until
    :meth:`~bot.rtc.EnxRtc.subscribe` is called. It also keeps a crowd of bots from receiving
    each other (N bots, N x (N-1) legs) unless a config asks for it.
    """

    mode: SubscribeMode = "none"
    """``all``: audio and video of every stream; ``audio``: audio only; ``none``: nothing
    unless :meth:`~bot.rtc.EnxRtc.subscribe` is called."""
    names: frozenset[str] | None = None
    """When set (``subscribe=["alice", ...]``): only the streams of these participants (their
    name as the room shows it, or the stream's name), audio and video."""
    max_video_subscriptions: int | None = None
    """Like EnableX's active talkers: at most this many streams are received with video; the
    next ones are received audio only (None: no limit; 0: never video)."""
    sink_factory: Callable[[dict[str, Any]], Any] | None = None
    """``sink_factory(stream_info)`` returns the ``bot.media.EncodedSink`` of a new subscribe
    leg (default: a ``DiscardSink``). See :meth:`~bot.rtc.EnxRtc.subscribe`."""
    stats_interval_s: float | None = None
    """Fire ``on_stats`` with :meth:`~bot.rtc.EnxRtc.stats` this often (None: never)."""

    @classmethod
    def build(
        cls,
        subscribe: object = "none",
        max_video_subscriptions: object = None,
        sink_factory: object = None,
        stats_interval_s: object = None,
    ) -> SubscribeOptions:
        """Validate the constructor's arguments (RoomError 1155 naming the bad one)."""
        mode: SubscribeMode = "none"
        names: frozenset[str] | None = None
        if isinstance(subscribe, str):
            if subscribe not in SUBSCRIBE_MODES:
                raise RoomError(
                    ErrorCode.INVALID_PARAMETERS,
                    f"subscribe must be one of {', '.join(SUBSCRIBE_MODES)} or a list of names, "
                    f"got {subscribe!r}",
                )
            mode = subscribe  # type: ignore[assignment]
        elif isinstance(subscribe, list | tuple | set | frozenset) and all(
            isinstance(n, str) for n in subscribe
        ):
            mode, names = "all", frozenset(subscribe)
        else:
            raise RoomError(
                ErrorCode.INVALID_PARAMETERS,
                f"subscribe must be 'all', 'none', 'audio' or a list of names, got {subscribe!r}",
            )
        if max_video_subscriptions is not None and (
            not isinstance(max_video_subscriptions, int)
            or isinstance(max_video_subscriptions, bool)
            or max_video_subscriptions < 0
        ):
            raise RoomError(
                ErrorCode.INVALID_PARAMETERS,
                f"max_video_subscriptions must be a number of streams (0 or more) or None, "
                f"got {max_video_subscriptions!r}",
            )
        if sink_factory is not None and not callable(sink_factory):
            raise RoomError(
                ErrorCode.INVALID_PARAMETERS, "sink_factory must be callable: stream info -> sink"
            )
        if stats_interval_s is not None and (
            not isinstance(stats_interval_s, int | float)
            or isinstance(stats_interval_s, bool)
            or not stats_interval_s > 0
        ):
            raise RoomError(
                ErrorCode.INVALID_PARAMETERS,
                f"stats_interval_s must be a positive number of seconds or None, got {stats_interval_s!r}",
            )
        return cls(
            mode=mode,
            names=names,
            max_video_subscriptions=max_video_subscriptions,
            sink_factory=sink_factory,
            stats_interval_s=None if stats_interval_s is None else float(stats_interval_s),
        )

    @property
    def automatic(self) -> bool:
        return self.mode != "none"

    def wants(self, stream: StreamInfo, owner_name: str | None) -> bool:
        """Whether the automatic mode subscribes to ``stream`` (of participant ``owner_name``)."""
        if self.mode == "none":
            return False
        if self.names is None:
            return True
        return bool({stream.name, stream.actual_name, owner_name} & self.names)

    def kinds(self, stream: StreamInfo, video_legs: int, *, audio_only: bool = False) -> tuple[bool, bool]:
        """``(audio, video)`` to receive of ``stream`` when ``video_legs`` streams are already
        received with video; ``audio_only`` (mode ``audio``) keeps video out."""
        audio = stream.audio
        video = stream.video and not audio_only
        if video and self.max_video_subscriptions is not None and video_legs >= self.max_video_subscriptions:
            video = False
        return audio, video


def listed_streams_to_subscribe(connected: RoomConnected) -> list[StreamInfo]:
    """The active-talker slot rule of the official client for ``room-connected.streams``
    (PROTOCOL.md section 5): a listed stream is subscribed if it is a screen share or its id is
    at most ``initialNumATs``. (The later slot releases on ``user-connected`` are not modelled:
    our room server sends an ``initialNumATs`` at least as large as every listed id, and
    streams that start later come with ``onAddStream``.)"""
    return [s for s in connected.streams if s.screen or s.id <= connected.initial_num_ats]
