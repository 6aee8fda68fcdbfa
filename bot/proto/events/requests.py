"""Client -> server events (what an EnxRtc emits; the server reads them with ``from_payload``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .._fields import Fields
from ..errors import ErrorCode, RemoteProtocolError
from .common import Json, MediaKind
from .moderation import MAX_CLIENT_ID_CHARS, MAX_DROP_CLIENT_IDS
from .sdp import SdpMessage, sdp_message_from_payload, sdp_message_to_payload


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
    PAYLOAD_OPTIONAL: ClassVar[bool] = True

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
    """``drop``: ``{self: true}`` (or nothing) is our own leave; a moderator's ``{all: false,
    clientIds: [...]}`` drops those participants, ``{all: true}`` everyone but itself
    (docs/protocol/moderation.md)."""

    PAYLOAD_OPTIONAL: ClassVar[bool] = True
    WIRE: ClassVar[str] = "drop"

    client_ids: tuple[str, ...] | None = None
    """None: the sender leaves."""
    all: bool = False

    @property
    def leave(self) -> bool:
        return self.client_ids is None and not self.all

    @classmethod
    def from_payload(cls, payload: object) -> DropRequest:
        if payload is None:
            return cls()
        f = Fields(payload, "drop")
        everyone = f.flag("all", False)
        ids = f.array("clientIds", None)
        if ids is None:
            return cls(all=everyone)
        if len(ids) > MAX_DROP_CLIENT_IDS:
            raise RemoteProtocolError(
                f"drop: field 'clientIds' names more than {MAX_DROP_CLIENT_IDS} clients",
                ErrorCode.INVALID_PARAMETERS,
            )
        if not all(isinstance(c, str) and 0 < len(c) <= MAX_CLIENT_ID_CHARS for c in ids):
            raise RemoteProtocolError(
                "drop: field 'clientIds' must be a list of client ids", ErrorCode.INVALID_PARAMETERS
            )
        if not ids and not everyone:
            raise RemoteProtocolError(
                "drop: 'clientIds' is empty (give 'all': true to drop everyone)", ErrorCode.INVALID_PARAMETERS
            )
        return cls(client_ids=tuple(dict.fromkeys(ids)), all=everyone)

    def to_payload(self) -> Json:
        if self.leave:
            return {"self": True}
        return {"all": self.all, "clientIds": list(self.client_ids or ())}


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
