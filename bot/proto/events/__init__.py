"""Wire events as frozen, keyword-only dataclasses (PROTOCOL.md sections 1-8).

Each class knows its wire name (``WIRE``), builds itself from a decoded JSON payload
(``from_payload``, raising :class:`RemoteProtocolError` naming the field) and renders its
payload (``to_payload``). Python names are snake_case; the camelCase of the wire lives only
in these two methods. Fields we do not model are kept in ``extra`` so nothing is lost when a
message is relayed.

One module per direction: ``common`` (shared parts), ``sdp`` (``signaling_message``
payloads), ``requests`` (client -> server), ``notices`` (server -> client), ``acks``.
"""

from .acks import Ack
from .common import DEFAULT_PERMISSIONS, IceServer, Json, MediaKind, StreamInfo, UserInfo
from .notices import (
    ActiveTalkersUpdated,
    BandwidthEvent,
    MediaEngineConnecting,
    RoomConnected,
    StreamAdded,
    StreamRemoved,
    UnknownEvent,
    UserConnected,
    UserDisconnected,
    UserMuteChanged,
)
from .requests import (
    MUTE_EVENTS,
    DropRequest,
    GetMaxTalkers,
    LogClientEvent,
    PublishRequest,
    SelfMuteRequest,
    SignalingMessage,
    SubscribeRequest,
    TokenRequest,
    UnpublishRequest,
    UnsubscribeRequest,
    mute_event_name,
)
from .sdp import (
    END_MARKER,
    Answer,
    Candidate,
    EndOfCandidates,
    Offer,
    OtherMessage,
    Ready,
    SdpMessage,
    sdp_message_from_payload,
    sdp_message_to_payload,
)
from .talkers import GetTalkerCount, PinUsers, SetTalkerCount, UnpinUsers

ClientEvent = (
    TokenRequest
    | GetMaxTalkers
    | LogClientEvent
    | PublishRequest
    | SubscribeRequest
    | SignalingMessage
    | UnpublishRequest
    | UnsubscribeRequest
    | DropRequest
    | SelfMuteRequest
    | SetTalkerCount
    | GetTalkerCount
    | PinUsers
    | UnpinUsers
)
ServerEvent = (
    RoomConnected
    | UserConnected
    | UserDisconnected
    | StreamAdded
    | StreamRemoved
    | MediaEngineConnecting
    | UserMuteChanged
    | BandwidthEvent
    | ActiveTalkersUpdated
    | UnknownEvent
)

__all__ = [
    "DEFAULT_PERMISSIONS",
    "END_MARKER",
    "MUTE_EVENTS",
    "Ack",
    "ActiveTalkersUpdated",
    "Answer",
    "BandwidthEvent",
    "Candidate",
    "ClientEvent",
    "DropRequest",
    "EndOfCandidates",
    "GetMaxTalkers",
    "GetTalkerCount",
    "IceServer",
    "Json",
    "LogClientEvent",
    "MediaEngineConnecting",
    "MediaKind",
    "Offer",
    "OtherMessage",
    "PinUsers",
    "PublishRequest",
    "Ready",
    "RoomConnected",
    "SdpMessage",
    "SelfMuteRequest",
    "ServerEvent",
    "SetTalkerCount",
    "SignalingMessage",
    "StreamAdded",
    "StreamInfo",
    "StreamRemoved",
    "SubscribeRequest",
    "TokenRequest",
    "UnknownEvent",
    "UnpinUsers",
    "UnpublishRequest",
    "UnsubscribeRequest",
    "UserConnected",
    "UserDisconnected",
    "UserInfo",
    "UserMuteChanged",
    "mute_event_name",
    "sdp_message_from_payload",
    "sdp_message_to_payload",
]
