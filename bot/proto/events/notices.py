"""Server -> client events (what the room tells its participants)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._fields import Fields
from .common import IceServer, Json, MediaKind, StreamInfo, UserInfo
from .requests import MUTE_EVENTS, mute_event_name
from .sdp import SdpMessage, sdp_message_from_payload, sdp_message_to_payload

ROOM_LISTS = ("raisedHands", "approvedHands", "floorInvites", "awaitedParticipants")
"""Lists the official client needs in ``room-connected`` (lecture-mode moderators fail without
the first three); empty unless the server puts them in ``extra``."""


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
            # lecture mode's hands and the waiting room's list: the server may fill them in
            **{key: list(self.extra.get(key) or []) for key in ROOM_LISTS},
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
