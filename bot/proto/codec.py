"""Events <-> Socket.IO (event name, argument list). The only place that knows wire names.

``encode`` gives what to hand to ``emit``; ``decode_client``/``decode_server`` turn what a
Socket.IO handler received back into events. Media requests (``publish``, ``subscribe``,
``signaling_message``) carry a second argument that is always ``null`` (PROTOCOL.md section 2).
"""

from __future__ import annotations

from typing import Any

from .errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from .events import (
    MODERATION_CLIENT_EVENTS,
    MODERATION_SERVER_EVENTS,
    MUTE_EVENTS,
    ActiveTalkersUpdated,
    BandwidthEvent,
    ClientEvent,
    DataReceived,
    DropRequest,
    GetMaxTalkers,
    GetTalkerCount,
    LogClientEvent,
    MediaEngineConnecting,
    PublishRequest,
    RoomConnected,
    SelfMuteRequest,
    SendData,
    ServerEvent,
    SignalingMessage,
    StreamAdded,
    StreamRemoved,
    SubscribeRequest,
    TokenRequest,
    UnknownEvent,
    UnpublishRequest,
    UnsubscribeRequest,
    UserConnected,
    UserDisconnected,
    UserMuteChanged,
)
from .events.conference import ConferenceRemainingDuration, RoomDisconnected
from .events.floor import FLOOR_NOTICES, FLOOR_REQUESTS
from .events.talkers import PinUsers, SetTalkerCount, UnpinUsers
from .events.waiting_room import ApproveAwaitedUser, DenyAwaitedUser, RoomAllowed, RoomAwaited, UserAwaited

CLIENT_EVENTS: dict[str, Any] = {
    cls.WIRE: cls
    for cls in (
        TokenRequest,
        GetMaxTalkers,
        LogClientEvent,
        PublishRequest,
        SubscribeRequest,
        SignalingMessage,
        UnpublishRequest,
        UnsubscribeRequest,
        DropRequest,
        SendData,
        *MODERATION_CLIENT_EVENTS,
        ApproveAwaitedUser,
        DenyAwaitedUser,
        *FLOOR_REQUESTS,
        SetTalkerCount,
        GetTalkerCount,
        PinUsers,
        UnpinUsers,
    )
}
SERVER_EVENTS: dict[str, Any] = {
    cls.WIRE: cls
    for cls in (
        RoomConnected,
        UserConnected,
        UserDisconnected,
        StreamAdded,
        StreamRemoved,
        MediaEngineConnecting,
        BandwidthEvent,
        ActiveTalkersUpdated,
        DataReceived,
        *MODERATION_SERVER_EVENTS,
        RoomAwaited,
        UserAwaited,
        RoomAllowed,
        *FLOOR_NOTICES,
        ConferenceRemainingDuration,
        RoomDisconnected,
    )
}
LEGACY_BANDWIDTH_EVENTS = ("onSelfBandwidthAlert", "onBandwidthAlert")
MEDIA_REQUESTS = frozenset({"publish", "subscribe", "signaling_message"})


def wire_name(event: ClientEvent | ServerEvent) -> str:
    if isinstance(event, SelfMuteRequest | UserMuteChanged):
        return event.wire_name
    if isinstance(event, UnknownEvent):
        return event.name
    name = getattr(event, "WIRE", None)
    if name is None:
        raise LocalProtocolError(f"{type(event).__name__} is not a wire event")
    return str(name)


def encode(event: ClientEvent | ServerEvent) -> tuple[str, tuple[Any, ...]]:
    """(Socket.IO event name, positional arguments) for ``emit``."""
    name = wire_name(event)
    if isinstance(event, UnknownEvent):
        return name, event.args
    payload = event.to_payload()
    if payload is None:
        return name, ()
    if name in MEDIA_REQUESTS and not isinstance(event, MediaEngineConnecting):
        return name, (payload, None)
    return name, (payload,)


def _first(name: str, args: tuple[Any, ...] | list[Any]) -> Any:
    return args[0] if args else None


def decode_client(name: str, args: tuple[Any, ...] | list[Any]) -> ClientEvent:
    """What the server received from a client. Unknown names are a RemoteProtocolError."""
    if name in MUTE_EVENTS:
        kind, muted = MUTE_EVENTS[name]
        return SelfMuteRequest(kind=kind, muted=muted)
    cls = CLIENT_EVENTS.get(name)
    if cls is None:
        raise RemoteProtocolError(f"unknown client event '{name}'", ErrorCode.MALFORMED_REQUEST)
    payload = _first(name, args)
    if payload is None and not getattr(cls, "PAYLOAD_OPTIONAL", False):
        raise RemoteProtocolError(f"{name}: missing argument", ErrorCode.MALFORMED_REQUEST)
    event: ClientEvent = cls.from_payload(payload)
    return event


def decode_server(name: str, args: tuple[Any, ...] | list[Any]) -> ServerEvent:
    """What the client received from the server. Unknown names become UnknownEvent."""
    if name in MUTE_EVENTS:
        return UserMuteChanged.from_wire(name, _first(name, args))
    if name in LEGACY_BANDWIDTH_EVENTS:
        payload = _first(name, args)
        legacy_id = "publisher-bw" if name == "onSelfBandwidthAlert" else "bw-alert"
        return BandwidthEvent(id=legacy_id, msg=payload)
    cls = SERVER_EVENTS.get(name)
    if cls is None:
        return UnknownEvent(name=name, args=tuple(args))
    event: ServerEvent = cls.from_payload(_first(name, args))
    return event
