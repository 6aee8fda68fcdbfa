"""Moderator actions on the wire: hard mutes (room-wide and per user), recording notices and the
moderator's drop of others (docs/protocol/moderation.md).

The per-user hard mutes keep one Socket.IO name in both directions, as the self mutes do:
the moderator sends ``hardmute-user-audio {clientId}``, the server tells the target
``hardmute-user-audio {clientId, moderator, msg}``. Each name is its own class (``WIRE``,
``KIND``, ``MUTED``) so the codec's tables need no special case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .._fields import Fields
from ..errors import ErrorCode, RemoteProtocolError
from .common import Json, MediaKind, NoArgs
from .conference import RoomDisconnected

MAX_CLIENT_ID_CHARS = 128
"""Longer is not a client id of ours (32 hex digits) nor of EnableX's: refused, not echoed."""
MAX_DROP_CLIENT_IDS = 256
"""One ``drop`` names at most this many participants (a room holds far fewer)."""
MAX_MSG_CHARS = 256
"""Notices are relayed text; anything longer is cut when read."""

DISCONNECTED_BY_MODERATOR_MSG = "disconnected-by-moderator"
"""``room-disconnected``'s ``cause.msg`` as EnableX's Web SDK documents it."""


def _client_id(f: Fields, key: str = "clientId") -> str:
    value: str = f.text(key)
    if not value or len(value) > MAX_CLIENT_ID_CHARS:
        raise RemoteProtocolError(
            f"{f.where}: field '{key}' must be a client id (1-{MAX_CLIENT_ID_CHARS} characters)",
            ErrorCode.INVALID_PARAMETERS,
        )
    return value


def _msg(f: Fields) -> str:
    return str(f.text("msg", ""))[:MAX_MSG_CHARS]


# ---------------------------------------------------------------------- client -> server


@dataclass(frozen=True, kw_only=True)
class HardMuteRoom(NoArgs):
    """``hardMute``: the moderator hard-mutes every participant's audio (no payload)."""

    WIRE: ClassVar[str] = "hardMute"
    MUTED: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class HardUnmuteRoom(HardMuteRoom):
    """``hardUnmute``: the room leaves its hard-mute state."""

    WIRE: ClassVar[str] = "hardUnmute"
    MUTED: ClassVar[bool] = False


@dataclass(frozen=True, kw_only=True)
class StartRecord(NoArgs):
    """``startRecord``: the moderator turns recording on (everyone hears ``room-record-on``)."""

    WIRE: ClassVar[str] = "startRecord"
    ON: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class StopRecord(StartRecord):
    WIRE: ClassVar[str] = "stopRecord"
    ON: ClassVar[bool] = False


# ---------------------------------------------------------------------- both directions


@dataclass(frozen=True, kw_only=True)
class HardMuteUser:
    """``hard(un)mute-user-<kind>``: from the moderator ``{clientId}`` (the target); from the
    server to the target ``{clientId, moderator, msg}``."""

    WIRE: ClassVar[str] = ""
    KIND: ClassVar[MediaKind] = "audio"
    MUTED: ClassVar[bool] = True

    client_id: str
    moderator: str = ""
    msg: str = ""

    @classmethod
    def from_payload(cls, payload: object) -> HardMuteUser:
        f = Fields(payload, cls.WIRE)
        return cls(
            client_id=_client_id(f), moderator=str(f.text("moderator", ""))[:MAX_CLIENT_ID_CHARS], msg=_msg(f)
        )

    def to_payload(self) -> Json:
        out: Json = {"clientId": self.client_id}
        if self.moderator:
            out["moderator"] = self.moderator
        if self.msg:
            out["msg"] = self.msg
        return out


@dataclass(frozen=True, kw_only=True)
class HardMuteUserAudio(HardMuteUser):
    WIRE: ClassVar[str] = "hardmute-user-audio"


@dataclass(frozen=True, kw_only=True)
class HardUnmuteUserAudio(HardMuteUser):
    WIRE: ClassVar[str] = "hardunmute-user-audio"
    MUTED: ClassVar[bool] = False


@dataclass(frozen=True, kw_only=True)
class HardMuteUserVideo(HardMuteUser):
    WIRE: ClassVar[str] = "hardmute-user-video"
    KIND: ClassVar[MediaKind] = "video"


@dataclass(frozen=True, kw_only=True)
class HardUnmuteUserVideo(HardMuteUser):
    WIRE: ClassVar[str] = "hardunmute-user-video"
    KIND: ClassVar[MediaKind] = "video"
    MUTED: ClassVar[bool] = False


HARD_MUTE_USER_EVENTS: tuple[type[HardMuteUser], ...] = (
    HardMuteUserAudio,
    HardUnmuteUserAudio,
    HardMuteUserVideo,
    HardUnmuteUserVideo,
)


def hard_mute_user_event(kind: MediaKind, muted: bool) -> type[HardMuteUser]:
    return next(c for c in HARD_MUTE_USER_EVENTS if kind == c.KIND and muted == c.MUTED)


# ---------------------------------------------------------------------- server -> client


@dataclass(frozen=True, kw_only=True)
class RoomHardMuted:
    """``room-muted``: the room is hard-muted (participants' audio); ``moderator`` did it."""

    WIRE: ClassVar[str] = "room-muted"
    MUTED: ClassVar[bool] = True

    moderator: str = ""
    msg: str = ""

    @classmethod
    def from_payload(cls, payload: object) -> RoomHardMuted:
        f = Fields({} if payload is None else payload, cls.WIRE)
        return cls(moderator=str(f.text("moderator", ""))[:MAX_CLIENT_ID_CHARS], msg=_msg(f))

    def to_payload(self) -> Json:
        return {"moderator": self.moderator, "msg": self.msg, "status": self.MUTED}


@dataclass(frozen=True, kw_only=True)
class RoomHardUnmuted(RoomHardMuted):
    WIRE: ClassVar[str] = "room-unmuted"
    MUTED: ClassVar[bool] = False


@dataclass(frozen=True, kw_only=True)
class RoomRecordOn:
    """``room-record-on``: the room is being recorded (``room-record-off``: no longer)."""

    WIRE: ClassVar[str] = "room-record-on"
    ON: ClassVar[bool] = True

    moderator: str = ""
    msg: str = ""

    @classmethod
    def from_payload(cls, payload: object) -> RoomRecordOn:
        f = Fields({} if payload is None else payload, cls.WIRE)
        return cls(moderator=str(f.text("moderatorId", ""))[:MAX_CLIENT_ID_CHARS], msg=_msg(f))

    def to_payload(self) -> Json:
        return {"moderatorId": self.moderator, "msg": self.msg}


@dataclass(frozen=True, kw_only=True)
class RoomRecordOff(RoomRecordOn):
    WIRE: ClassVar[str] = "room-record-off"
    ON: ClassVar[bool] = False


MODERATION_CLIENT_EVENTS: tuple[Any, ...] = (
    HardMuteRoom,
    HardUnmuteRoom,
    StartRecord,
    StopRecord,
    *HARD_MUTE_USER_EVENTS,
)
MODERATION_SERVER_EVENTS: tuple[Any, ...] = (
    RoomHardMuted,
    RoomHardUnmuted,
    RoomRecordOn,
    RoomRecordOff,
    RoomDisconnected,
    *HARD_MUTE_USER_EVENTS,
)
