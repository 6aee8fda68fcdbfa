"""Wire events as frozen, keyword-only dataclasses (PROTOCOL.md sections 1-8).

Each class knows its wire name (``WIRE``), builds itself from a decoded JSON payload
(``from_payload``, raising :class:`RemoteProtocolError` naming the field) and renders its
payload (``to_payload``). Python names are snake_case; the camelCase of the wire lives only
in these two methods. Fields we do not model are kept in ``extra`` so nothing is lost when a
message is relayed.

One module per direction: ``common`` (shared parts), ``sdp`` (``signaling_message``
payloads), ``requests`` (client -> server), ``notices`` (server -> client), ``acks``; ``data`` (chat and
custom data, both directions).
"""

from .acks import Ack
from .common import DEFAULT_PERMISSIONS, IceServer, Json, MediaKind, StreamInfo, UserInfo
from .conference import ConferenceRemainingDuration, RoomDisconnected
from .data import DataReceived, SendData
from .floor import (
    FLOOR_NOTICES,
    FLOOR_REQUESTS,
    DenyFloor,
    FloorDenied,
    FloorGranted,
    FloorReleased,
    FloorRequested,
    GrantFloor,
    ReleaseFloor,
    RequestFloor,
)
from .moderation import (
    HARD_MUTE_USER_EVENTS,
    MODERATION_CLIENT_EVENTS,
    MODERATION_SERVER_EVENTS,
    HardMuteRoom,
    HardMuteUser,
    HardUnmuteRoom,
    RoomHardMuted,
    RoomHardUnmuted,
    RoomRecordOff,
    RoomRecordOn,
    StartRecord,
    StopRecord,
    hard_mute_user_event,
)
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
from .waiting_room import (
    MAX_CLIENT_ID,
    ApproveAwaitedUser,
    AwaitReason,
    DenyAwaitedUser,
    RoomAllowed,
    RoomAwaited,
    UserAwaited,
)

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
    | SendData
    | HardMuteRoom
    | HardMuteUser
    | StartRecord
    | ApproveAwaitedUser
    | DenyAwaitedUser
    | RequestFloor
    | GrantFloor
    | DenyFloor
    | ReleaseFloor
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
    | DataReceived
    | RoomHardMuted
    | RoomRecordOn
    | RoomDisconnected
    | HardMuteUser
    | UnknownEvent
    | RoomAwaited
    | UserAwaited
    | RoomAllowed
    | FloorRequested
    | FloorGranted
    | FloorDenied
    | FloorReleased
    | ConferenceRemainingDuration
)

__all__ = [
    "DEFAULT_PERMISSIONS",
    "END_MARKER",
    "FLOOR_NOTICES",
    "FLOOR_REQUESTS",
    "HARD_MUTE_USER_EVENTS",
    "MAX_CLIENT_ID",
    "MODERATION_CLIENT_EVENTS",
    "MODERATION_SERVER_EVENTS",
    "MUTE_EVENTS",
    "Ack",
    "ActiveTalkersUpdated",
    "Answer",
    "ApproveAwaitedUser",
    "AwaitReason",
    "BandwidthEvent",
    "Candidate",
    "ClientEvent",
    "ConferenceRemainingDuration",
    "DataReceived",
    "DenyAwaitedUser",
    "DenyFloor",
    "DropRequest",
    "EndOfCandidates",
    "FloorDenied",
    "FloorGranted",
    "FloorReleased",
    "FloorRequested",
    "GetMaxTalkers",
    "GetTalkerCount",
    "GrantFloor",
    "HardMuteRoom",
    "HardMuteUser",
    "HardUnmuteRoom",
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
    "ReleaseFloor",
    "RequestFloor",
    "RoomAllowed",
    "RoomAwaited",
    "RoomConnected",
    "RoomDisconnected",
    "RoomHardMuted",
    "RoomHardUnmuted",
    "RoomRecordOff",
    "RoomRecordOn",
    "SdpMessage",
    "SelfMuteRequest",
    "SendData",
    "ServerEvent",
    "SetTalkerCount",
    "SignalingMessage",
    "StartRecord",
    "StopRecord",
    "StreamAdded",
    "StreamInfo",
    "StreamRemoved",
    "SubscribeRequest",
    "TokenRequest",
    "UnknownEvent",
    "UnpinUsers",
    "UnpublishRequest",
    "UnsubscribeRequest",
    "UserAwaited",
    "UserConnected",
    "UserDisconnected",
    "UserInfo",
    "UserMuteChanged",
    "hard_mute_user_event",
    "mute_event_name",
    "sdp_message_from_payload",
    "sdp_message_to_payload",
]
