"""Wire events as frozen, keyword-only dataclasses (PROTOCOL.md sections 1-8).

Each class knows its wire name (``WIRE``), builds itself from a decoded JSON payload
(``from_payload``, raising :class:`RemoteProtocolError` naming the field) and renders its
payload (``to_payload``). Python names are snake_case; the camelCase of the wire lives only
in these two methods. Fields we do not model are kept in ``extra`` so nothing is lost when a
message is relayed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from ._fields import Fields
from .errors import ErrorCode, RemoteProtocolError

Json = dict[str, Any]
MediaKind = Literal["audio", "video"]

DEFAULT_PERMISSIONS: Json = {
    "publish": True,
    "subscribe": True,
    "record": False,
    "stats": False,
    "controlhandlers": False,
}


# --------------------------------------------------------------------------- shared parts


@dataclass(frozen=True, kw_only=True)
class UserInfo:
    """A participant as the room describes it (``user-connected``, ``room-connected.user``)."""

    client_id: str
    name: str
    role: str = "participant"
    user_ref: str = ""
    permissions: Json = field(default_factory=lambda: dict(DEFAULT_PERMISSIONS))
    audio_muted: bool = False
    video_muted: bool = False
    audio_enabled: bool = True
    video_enabled: bool = True
    data: Json = field(default_factory=dict)

    @classmethod
    def from_payload(cls, payload: object, where: str = "user") -> UserInfo:
        f = Fields(payload, where)
        return cls(
            client_id=f.text("clientId"),
            name=f.text("name", ""),
            role=f.text("role", "participant"),
            user_ref=f.text("user_ref", ""),
            permissions=f.mapping("permissions", {}),
            audio_muted=f.flag("audioMuted", False),
            video_muted=f.flag("videoMuted", False),
            audio_enabled=f.flag("audioEnabled", True),
            video_enabled=f.flag("videoEnabled", True),
            data=f.mapping("data", {}),
        )

    def to_payload(self) -> Json:
        return {
            "clientId": self.client_id,
            "name": self.name,
            "role": self.role,
            "user_ref": self.user_ref,
            "permissions": dict(self.permissions),
            "audioMuted": self.audio_muted,
            "videoMuted": self.video_muted,
            "audioEnabled": self.audio_enabled,
            "videoEnabled": self.video_enabled,
            "data": dict(self.data),
        }


@dataclass(frozen=True, kw_only=True)
class StreamInfo:
    """A published stream as others learn of it (``onAddStream``, ``room-connected.streams``)."""

    WIRE: ClassVar[str] = "onAddStream"

    id: int
    client_id: str
    audio: bool = True
    video: bool = True
    data: bool = False
    screen: bool = False
    name: str = ""
    actual_name: str = ""

    @classmethod
    def from_payload(cls, payload: object, where: str = "onAddStream") -> StreamInfo:
        f = Fields(payload, where)
        attrs = Fields(f.mapping("attributes", {}), f"{where}.attributes")
        return cls(
            id=f.id("id"),
            client_id=f.text("clientId", ""),
            audio=f.flag("audio", False),
            video=f.flag("video", False),
            data=f.flag("data", False),
            screen=f.flag("screen", False),
            name=attrs.text("name", ""),
            actual_name=attrs.text("actualName", ""),
        )

    def to_payload(self) -> Json:
        return {
            "id": self.id,
            "clientId": self.client_id,
            "audio": self.audio,
            "video": self.video,
            "data": self.data,
            "screen": self.screen,
            "attributes": {"name": self.name, "actualName": self.actual_name or self.name},
        }


@dataclass(frozen=True, kw_only=True)
class IceServer:
    urls: str | list[str]
    username: str | None = None
    credential: str | None = None

    @classmethod
    def from_payload(cls, payload: object) -> IceServer:
        f = Fields(payload, "room-connected.iceServers[]")
        urls = payload.get("urls") if isinstance(payload, dict) else None
        if not (isinstance(urls, str) or (isinstance(urls, list) and all(isinstance(u, str) for u in urls))):
            raise RemoteProtocolError(
                "room-connected.iceServers[]: field 'urls' must be a string or list of strings"
            )
        return cls(urls=urls, username=f.text("username", None), credential=f.text("credential", None))

    def to_payload(self) -> Json:
        out: Json = {"urls": self.urls}
        if self.username is not None:
            out["username"] = self.username
        if self.credential is not None:
            out["credential"] = self.credential
        return out

    def __repr__(self) -> str:
        return f"IceServer(urls={self.urls!r}, username={self.username!r}, credential=***)"


# --------------------------------------------------------------------------- SDP messages


@dataclass(frozen=True, kw_only=True)
class Offer:
    type: ClassVar[str] = "offer"
    sdp: str


@dataclass(frozen=True, kw_only=True)
class Answer:
    """The server's answer. ``media`` lists codecs per kind: the official client needs it."""

    type: ClassVar[str] = "answer"
    sdp: str
    media: list[Json] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """A trickled candidate; ``candidate`` keeps the ``a=`` prefix the official client sends."""

    type: ClassVar[str] = "candidate"
    sdp_mline_index: int
    sdp_mid: str
    candidate: str


@dataclass(frozen=True, kw_only=True)
class EndOfCandidates:
    type: ClassVar[str] = "candidate"


@dataclass(frozen=True, kw_only=True)
class Ready:
    type: ClassVar[str] = "ready"


@dataclass(frozen=True, kw_only=True)
class OtherMessage:
    """Any other ``msg.type``: the official client ignores these, and so do we."""

    type: str
    raw: Json = field(default_factory=dict)


SdpMessage = Offer | Answer | Candidate | EndOfCandidates | Ready | OtherMessage

END_MARKER: Json = {"sdpMLineIndex": -1, "sdpMid": "end", "candidate": "end"}


def sdp_message_from_payload(payload: object, where: str) -> SdpMessage:
    f = Fields(payload, where)
    kind = f.text("type")
    if kind == "offer":
        return Offer(sdp=f.text("sdp"))
    if kind == "answer":
        return Answer(sdp=f.text("sdp"), media=f.array("media", []))
    if kind == "candidate":
        c = Fields(f.mapping("candidate"), f"{where}.candidate")
        if c.payload.get("candidate") == "end" or c.payload.get("sdpMLineIndex") == -1:
            return EndOfCandidates()
        return Candidate(
            sdp_mline_index=c.integer("sdpMLineIndex", 0),
            sdp_mid=str(c.payload.get("sdpMid", "0")),
            candidate=c.text("candidate"),
        )
    if kind == "ready":
        return Ready()
    return OtherMessage(type=kind, raw=dict(f.payload))


def sdp_message_to_payload(msg: SdpMessage) -> Json:
    if isinstance(msg, Offer):
        return {"type": "offer", "sdp": msg.sdp}
    if isinstance(msg, Answer):
        return {"type": "answer", "sdp": msg.sdp, "media": list(msg.media)}
    if isinstance(msg, Candidate):
        return {
            "type": "candidate",
            "candidate": {
                "sdpMLineIndex": msg.sdp_mline_index,
                "sdpMid": msg.sdp_mid,
                "candidate": msg.candidate,
            },
        }
    if isinstance(msg, EndOfCandidates):
        return {"type": "candidate", "candidate": dict(END_MARKER)}
    if isinstance(msg, Ready):
        return {"type": "ready"}
    return {**msg.raw, "type": msg.type}


# --------------------------------------------------------------------------- client -> server


@dataclass(frozen=True, kw_only=True)
class TokenRequest:
    """``token``: the decoded envelope sent back, plus who we are (and rejoin fields)."""

    WIRE: ClassVar[str] = "token"

    envelope: Json
    version: str = "2.3.16"
    host_type: str = "enx-bot"
    host_version: str = ""
    host_device_type: str = "headless"
    user_agent: str = ""
    is_reconnecting: bool = False
    reconnect_attempt: int | None = None
    old_client_id: str | None = None
    room: str | None = None
    role: str | None = None
    name: str | None = None

    @classmethod
    def from_payload(cls, payload: object) -> TokenRequest:
        f = Fields(payload, "token")
        envelope = {
            k: v
            for k, v in f.payload.items()
            if k
            not in {
                "version",
                "hostType",
                "hostVersion",
                "hostDeviceType",
                "userAgent",
                "isReconnecting",
                "reconnectAttempt",
                "oldClientIdForReconnect",
                "room",
                "role",
                "name",
            }
        }
        f.text("tokenId", None)  # type-checked here; verified by the server
        return cls(
            envelope=envelope,
            version=f.text("version", ""),
            host_type=f.text("hostType", ""),
            host_version=f.text("hostVersion", ""),
            host_device_type=f.text("hostDeviceType", ""),
            user_agent=f.text("userAgent", ""),
            is_reconnecting=f.flag("isReconnecting", False),
            reconnect_attempt=f.integer("reconnectAttempt", None),
            old_client_id=f.text("oldClientIdForReconnect", None),
            room=f.text("room", None),
            role=f.text("role", None),
            name=f.text("name", None),
        )

    def to_payload(self) -> Json:
        out: Json = {
            **self.envelope,
            "version": self.version,
            "hostType": self.host_type,
            "hostVersion": self.host_version,
            "hostDeviceType": self.host_device_type,
            "userAgent": self.user_agent,
        }
        if self.is_reconnecting:
            out.update(
                isReconnecting=True,
                reconnectAttempt=self.reconnect_attempt or 1,
                oldClientIdForReconnect=self.old_client_id,
                room=self.room,
                role=self.role,
                name=self.name,
            )
        return out

    def __repr__(self) -> str:  # never print the envelope: it is the credential
        return f"TokenRequest(version={self.version!r}, reconnecting={self.is_reconnecting})"


@dataclass(frozen=True, kw_only=True)
class GetMaxTalkers:
    WIRE: ClassVar[str] = "getMaxNumberOfTalker"

    @classmethod
    def from_payload(cls, payload: object) -> GetMaxTalkers:
        return cls()

    def to_payload(self) -> None:
        return None


@dataclass(frozen=True, kw_only=True)
class LogClientEvent:
    WIRE: ClassVar[str] = "logClientEvents"

    event_type: str
    fields: Json = field(default_factory=dict)

    @classmethod
    def from_payload(cls, payload: object) -> LogClientEvent:
        f = Fields(payload, "logClientEvents")
        return cls(event_type=f.text("eventType"), fields=dict(f.payload))

    def to_payload(self) -> Json:
        return {**self.fields, "eventType": self.event_type}


@dataclass(frozen=True, kw_only=True)
class PublishRequest:
    WIRE: ClassVar[str] = "publish"
    MEDIA_REQUEST: ClassVar[bool] = True

    audio: bool = True
    video: bool = True
    data: bool = False
    screen: bool | None = None
    name: str = ""
    mute_audio: bool = False
    mute_video: bool = False
    min_video_bw: int | None = None
    max_video_bw: int | None = None
    scheme: str = "notify-break-recover"

    @classmethod
    def from_payload(cls, payload: object) -> PublishRequest:
        f = Fields(payload, "publish")
        state = f.text("state", "media_engine")
        if state != "media_engine":
            raise RemoteProtocolError(f"publish: state '{state}' is not supported (media_engine only)")
        attrs = Fields(f.mapping("attributes", {}), "publish.attributes")
        mute = Fields(f.mapping("muteStream", {}), "publish.muteStream")
        return cls(
            audio=f.flag("audio", False),
            video=f.flag("video", False),
            data=f.flag("data", False),
            screen=f.flag("screen", None),
            name=attrs.text("name", ""),
            mute_audio=mute.flag("audio", False),
            mute_video=mute.flag("video", False),
            min_video_bw=f.integer("minVideoBW", None),
            max_video_bw=f.integer("maxVideoBW", None),
            scheme=f.text("scheme", "notify-break-recover"),
        )

    def to_payload(self) -> Json:
        out: Json = {
            "state": "media_engine",
            "data": self.data,
            "audio": self.audio,
            "video": self.video,
            "attributes": {"name": self.name},
            "muteStream": {"audio": self.mute_audio, "video": self.mute_video},
        }
        if self.screen is not None:
            out["screen"] = self.screen
        if self.min_video_bw is not None:
            out["minVideoBW"] = self.min_video_bw
        if self.max_video_bw is not None:
            out["maxVideoBW"] = self.max_video_bw
        out["scheme"] = self.scheme
        return out


@dataclass(frozen=True, kw_only=True)
class SubscribeRequest:
    WIRE: ClassVar[str] = "subscribe"
    MEDIA_REQUEST: ClassVar[bool] = True

    stream_id: int
    audio: bool = True
    video: bool = True
    data: bool = False
    browser: str = "enx-bot"
    mute_audio: bool = False

    @classmethod
    def from_payload(cls, payload: object) -> SubscribeRequest:
        f = Fields(payload, "subscribe")
        mute = Fields(f.mapping("muteStream", {}), "subscribe.muteStream")
        return cls(
            stream_id=f.id("streamId"),
            audio=f.flag("audio", True),
            video=f.flag("video", True),
            data=f.flag("data", False),
            browser=f.text("browser", ""),
            mute_audio=mute.flag("audio", False),
        )

    def to_payload(self) -> Json:
        return {
            "streamId": self.stream_id,
            "audio": self.audio,
            "video": self.video,
            "data": self.data,
            "canvas": False,
            "browser": self.browser,
            "muteStream": {"audio": self.mute_audio},
        }


@dataclass(frozen=True, kw_only=True)
class SignalingMessage:
    """``signaling_message``: the client's offer and candidates for one leg (keyed streamId)."""

    WIRE: ClassVar[str] = "signaling_message"
    MEDIA_REQUEST: ClassVar[bool] = True

    stream_id: int
    msg: SdpMessage

    @classmethod
    def from_payload(cls, payload: object) -> SignalingMessage:
        f = Fields(payload, "signaling_message")
        return cls(
            stream_id=f.id("streamId"),
            msg=sdp_message_from_payload(f.mapping("msg"), "signaling_message.msg"),
        )

    def to_payload(self) -> Json:
        return {"streamId": self.stream_id, "msg": sdp_message_to_payload(self.msg)}


@dataclass(frozen=True, kw_only=True)
class UnpublishRequest:
    """``unpublish`` carries a bare stream id, not an object."""

    WIRE: ClassVar[str] = "unpublish"

    stream_id: int

    @classmethod
    def from_payload(cls, payload: object) -> UnpublishRequest:
        if isinstance(payload, dict):
            return cls(stream_id=Fields(payload, "unpublish").id("streamId"))
        if isinstance(payload, str) and payload.isdigit():
            return cls(stream_id=int(payload))
        if not isinstance(payload, int) or isinstance(payload, bool):
            raise RemoteProtocolError("unpublish: argument must be a stream id (integer)")
        return cls(stream_id=payload)

    def to_payload(self) -> int:
        return self.stream_id


@dataclass(frozen=True, kw_only=True)
class UnsubscribeRequest:
    WIRE: ClassVar[str] = "unsubscribe"

    stream_id: int

    @classmethod
    def from_payload(cls, payload: object) -> UnsubscribeRequest:
        if isinstance(payload, dict):
            return cls(stream_id=Fields(payload, "unsubscribe").id("streamId"))
        return cls(stream_id=UnpublishRequest.from_payload(payload).stream_id)

    def to_payload(self) -> int:
        return self.stream_id


@dataclass(frozen=True, kw_only=True)
class DropRequest:
    WIRE: ClassVar[str] = "drop"

    @classmethod
    def from_payload(cls, payload: object) -> DropRequest:
        if payload is not None:
            Fields(payload, "drop")
        return cls()

    def to_payload(self) -> Json:
        return {"self": True}


@dataclass(frozen=True, kw_only=True)
class SelfMuteRequest:
    """``user-audio-muted`` and friends from the client: no payload, the event name says it all."""

    kind: MediaKind
    muted: bool

    @property
    def wire_name(self) -> str:
        return mute_event_name(self.kind, self.muted)

    def to_payload(self) -> None:
        return None


def mute_event_name(kind: MediaKind, muted: bool) -> str:
    return f"user-{kind}-{'muted' if muted else 'unmuted'}"


MUTE_EVENTS: dict[str, tuple[MediaKind, bool]] = {
    mute_event_name(k, m): (k, m) for k in ("audio", "video") for m in (True, False)
}


# --------------------------------------------------------------------------- server -> client


@dataclass(frozen=True, kw_only=True)
class RoomConnected:
    """``room-connected``. ``to_payload`` always emits the fields the official client needs."""

    WIRE: ClassVar[str] = "room-connected"

    room_id: str
    client_id: str
    user: UserInfo
    user_list: list[UserInfo] = field(default_factory=list)
    streams: list[StreamInfo] = field(default_factory=list)
    ice_servers: list[IceServer] = field(default_factory=list)
    room: Json = field(default_factory=dict)
    default_video_bw: int = 500
    max_video_bw: int = 1000
    min_video_bw: int = 100
    max_video_layers: int = 1
    initial_num_ats: int = 6
    max_talkers: int = 6
    internet_detection_url: str | None = None
    video_muted_users: Json = field(default_factory=dict)
    extra: Json = field(default_factory=dict)

    @classmethod
    def from_payload(cls, payload: object) -> RoomConnected:
        f = Fields(payload, "room-connected")
        room = f.mapping("room")
        Fields(room, "room-connected.room").mapping("settings")
        user = UserInfo.from_payload(f.mapping("user"), "room-connected.user")
        known = {
            "id",
            "clientId",
            "user",
            "userList",
            "streams",
            "iceServers",
            "room",
            "defaultVideoBW",
            "maxVideoBW",
            "minVideoBW",
            "maxVideoLayers",
            "initialNumATs",
            "internetDetectionUrl",
            "videoMutedUsers",
        }
        vmu = f.payload.get("videoMutedUsers", {})
        return cls(
            room_id=f.text("id", ""),
            client_id=f.text("clientId", user.client_id),
            user=user,
            user_list=[
                UserInfo.from_payload(u, "room-connected.userList[]") for u in f.array("userList", [])
            ],
            streams=[StreamInfo.from_payload(s, "room-connected.streams[]") for s in f.array("streams", [])],
            ice_servers=[IceServer.from_payload(s) for s in f.array("iceServers", [])],
            room=room,
            default_video_bw=f.integer("defaultVideoBW", 500),
            max_video_bw=f.integer("maxVideoBW", 1000),
            min_video_bw=f.integer("minVideoBW", 100),
            max_video_layers=f.integer("maxVideoLayers", 1),
            initial_num_ats=f.integer("initialNumATs", 1),
            internet_detection_url=f.text("internetDetectionUrl", None),
            video_muted_users=vmu if isinstance(vmu, dict) else {},
            extra={k: v for k, v in f.payload.items() if k not in known},
        )

    def to_payload(self) -> Json:
        room = dict(self.room)
        room.setdefault("settings", {})
        room.setdefault("sharePermissions", {"screen": {"state": "idle"}, "canvas": {"state": "idle"}})
        out: Json = {
            **self.extra,
            "id": self.room_id,
            "clientId": self.client_id,
            "user": self.user.to_payload(),
            "userList": [u.to_payload() for u in self.user_list],
            "streams": [s.to_payload() for s in self.streams],
            "iceServers": [s.to_payload() for s in self.ice_servers],
            "defaultVideoBW": self.default_video_bw,
            "maxVideoBW": self.max_video_bw,
            "minVideoBW": self.min_video_bw,
            "maxVideoLayers": self.max_video_layers,
            "initialNumATs": self.initial_num_ats,
            "videoMutedUsers": dict(self.video_muted_users),
            "videoBitrateQualityMap": {},
            "raisedHands": [],
            "approvedHands": [],
            "floorInvites": [],
            "awaitedParticipants": [],
            "room": room,
        }
        if self.internet_detection_url:
            out["internetDetectionUrl"] = self.internet_detection_url
        return out


@dataclass(frozen=True, kw_only=True)
class UserConnected:
    WIRE: ClassVar[str] = "user-connected"

    user: UserInfo

    @classmethod
    def from_payload(cls, payload: object) -> UserConnected:
        return cls(user=UserInfo.from_payload(payload, "user-connected"))

    def to_payload(self) -> Json:
        return self.user.to_payload()


@dataclass(frozen=True, kw_only=True)
class UserDisconnected:
    WIRE: ClassVar[str] = "user-disconnected"

    client_id: str
    name: str = ""
    role: str = "participant"
    permissions: Json = field(default_factory=dict)

    @classmethod
    def from_payload(cls, payload: object) -> UserDisconnected:
        f = Fields(payload, "user-disconnected")
        return cls(
            client_id=f.text("clientId"),
            name=f.text("name", ""),
            role=f.text("role", "participant"),
            permissions=f.mapping("permissions", {}),
        )

    def to_payload(self) -> Json:
        return {
            "clientId": self.client_id,
            "name": self.name,
            "role": self.role,
            "permissions": dict(self.permissions),
        }


@dataclass(frozen=True, kw_only=True)
class StreamAdded:
    WIRE: ClassVar[str] = "onAddStream"

    stream: StreamInfo

    @classmethod
    def from_payload(cls, payload: object) -> StreamAdded:
        return cls(stream=StreamInfo.from_payload(payload))

    def to_payload(self) -> Json:
        return self.stream.to_payload()


@dataclass(frozen=True, kw_only=True)
class StreamRemoved:
    WIRE: ClassVar[str] = "onRemoveStream"

    stream_id: int

    @classmethod
    def from_payload(cls, payload: object) -> StreamRemoved:
        return cls(stream_id=Fields(payload, "onRemoveStream").id("id"))

    def to_payload(self) -> Json:
        return {"id": self.stream_id}


@dataclass(frozen=True, kw_only=True)
class MediaEngineConnecting:
    """Answer, candidates and ``ready`` for one leg: ``streamId`` for a publish leg,
    ``peerId`` for a subscribe leg (PROTOCOL.md section 5)."""

    WIRE: ClassVar[str] = "media_engine_connecting"

    stream_id: int
    msg: SdpMessage
    subscriber: bool = False

    @classmethod
    def from_payload(cls, payload: object) -> MediaEngineConnecting:
        f = Fields(payload, "media_engine_connecting")
        subscriber = "peerId" in f.payload
        stream_id = f.id("peerId") if subscriber else f.id("streamId")
        return cls(
            stream_id=stream_id,
            subscriber=subscriber,
            msg=sdp_message_from_payload(f.mapping("msg"), "media_engine_connecting.msg"),
        )

    def to_payload(self) -> Json:
        key = "peerId" if self.subscriber else "streamId"
        return {key: self.stream_id, "msg": sdp_message_to_payload(self.msg)}


@dataclass(frozen=True, kw_only=True)
class UserMuteChanged:
    """Relay of another participant's mute: ``{clientId, user}`` (``{clientId, streamId}``
    crashes the official client, PROTOCOL.md section 4)."""

    kind: MediaKind
    muted: bool
    client_id: str
    user: UserInfo | None = None

    @property
    def wire_name(self) -> str:
        return mute_event_name(self.kind, self.muted)

    @classmethod
    def from_wire(cls, name: str, payload: object) -> UserMuteChanged:
        kind, muted = MUTE_EVENTS[name]
        f = Fields(payload, name)
        user_payload = f.mapping("user", None)
        return cls(
            kind=kind,
            muted=muted,
            client_id=f.text("clientId"),
            user=None if user_payload is None else UserInfo.from_payload(user_payload, f"{name}.user"),
        )

    def to_payload(self) -> Json:
        out: Json = {"clientId": self.client_id}
        if self.user is not None:
            out["user"] = self.user.to_payload()
        return out


@dataclass(frozen=True, kw_only=True)
class BandwidthEvent:
    """``bandwidthEvents {id, msg}`` and the 1.x ``onSelfBandwidthAlert``/``onBandwidthAlert``."""

    WIRE: ClassVar[str] = "bandwidthEvents"

    id: str
    msg: Any

    @classmethod
    def from_payload(cls, payload: object) -> BandwidthEvent:
        f = Fields(payload, "bandwidthEvents")
        return cls(id=f.text("id"), msg=f.payload.get("msg"))

    def to_payload(self) -> Json:
        return {"id": self.id, "msg": self.msg}


@dataclass(frozen=True, kw_only=True)
class ActiveTalkersUpdated:
    WIRE: ClassVar[str] = "active-talkers-updated"

    active_list: list[Json]
    active: bool = True

    @classmethod
    def from_payload(cls, payload: object) -> ActiveTalkersUpdated:
        f = Fields(payload, "active-talkers-updated")
        return cls(active_list=f.array("activeList", []), active=f.flag("active", True))

    def to_payload(self) -> Json:
        return {"activeList": list(self.active_list), "active": self.active}


@dataclass(frozen=True, kw_only=True)
class UnknownEvent:
    """A server event we do not model; kept so the SDK can log it rather than crash."""

    name: str
    args: tuple[Any, ...]


# --------------------------------------------------------------------------- acks


@dataclass(frozen=True, kw_only=True)
class Ack:
    """An acknowledgement: ``{result: 0, ...}`` or ``{result: code, msg}``."""

    result: int = 0
    msg: str | None = None
    fields: Json = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.result == 0

    @classmethod
    def error(cls, code: int, msg: str) -> Ack:
        return cls(result=int(code), msg=msg)

    @classmethod
    def from_args(cls, request: str, args: tuple[Any, ...] | list[Any] | None) -> Ack:
        """Read an ack. Empty acks are success (``signaling_message`` acks are empty)."""
        if not args:
            return cls()
        first = args[0]
        if first is None:
            return cls(result=int(ErrorCode.INVALID_PARAMETERS), msg=f"{request}: refused (null ack)")
        if not isinstance(first, dict):
            raise RemoteProtocolError(f"ack of {request}: expected an object, got {type(first).__name__}")
        f = Fields(first, f"ack of {request}")
        result = first.get("result", 0)
        if isinstance(result, str) and result.lstrip("-").isdigit():
            result = int(result)
        if not isinstance(result, int) or isinstance(result, bool):
            raise RemoteProtocolError(f"ack of {request}: field 'result' must be an integer")
        msg = first.get("msg", first.get("error"))
        return cls(
            result=result,
            msg=msg if isinstance(msg, str) else (None if msg is None else str(msg)),
            fields={k: v for k, v in f.payload.items() if k not in {"result", "msg"}},
        )

    def to_payload(self) -> Json:
        out: Json = {"result": self.result, **self.fields}
        if self.msg is not None:
            out["msg"] = self.msg
        return out


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
