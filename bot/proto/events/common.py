"""The parts several events share: a participant, a stream, an ICE server (PROTOCOL.md 2-3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self

from .._fields import Fields
from ..errors import RemoteProtocolError

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
class NoArgs:
    """An event that carries nothing: no payload or an object (its fields ignored) is accepted;
    it sends no argument, or ``{}`` where EnableX's client does (``SENDS_EMPTY_OBJECT``)."""

    WIRE: ClassVar[str] = ""
    PAYLOAD_OPTIONAL: ClassVar[bool] = True
    SENDS_EMPTY_OBJECT: ClassVar[bool] = False

    @classmethod
    def from_payload(cls, payload: object) -> Self:
        if payload is not None:
            Fields(payload, cls.WIRE)  # an object, or nothing
        return cls()

    def to_payload(self) -> Json | None:
        return {} if self.SENDS_EMPTY_OBJECT else None


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
