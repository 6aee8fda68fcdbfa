"""Rooms, participants and streams: the server's state, pure (no sockets, no asyncio).

The signalling adapter drives these objects and turns what they return into wire events;
keeping them pure means the bookkeeping (who owns which stream, what a joiner sees, what a
leaver leaves behind) is tested without a network. The registry writes rooms through to the
:class:`~.store.Store` (a synchronous SQLite write of one row, or nothing in memory).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from bot.proto import QUALITIES, ROLES, ParticipantPhase, PhaseMachine, ServerEvent, StreamInfo, UserInfo

from .errors import BadRequest, RoomNotFound
from .store import Store

Json = dict[str, Any]
StreamState = Literal["connecting", "ready", "failed"]

PUBLISHING_ROLES = frozenset({"moderator", "participant"})

# What a room gets when POST /rooms leaves a setting out (PROTOCOL.md section 11).
DEFAULT_SETTINGS: Json = {
    "description": "",
    "mode": "group",
    "scheduled": False,
    "adhoc": True,
    "moderators": "1",
    "participants": "10",
    "quality": "SD",
    "canvas": False,
    "auto_recording": False,
    "active_talker": True,
    "abwd": True,
}
SETTING_TYPES: dict[str, tuple[type, ...]] = {
    "description": (str,),
    "mode": (str,),
    "scheduled": (bool,),
    "adhoc": (bool,),
    "duration": (int,),
    "moderators": (str, int),
    "participants": (str, int),
    "quality": (str,),
    "canvas": (bool,),
    "auto_recording": (bool,),
    "active_talker": (bool,),
    "abwd": (bool,),
    "max_active_talkers": (int,),
    "media_configuration": (str,),
    "knock": (bool,),  # the waiting room: a moderator approves each participant
    "wait_for_moderator": (bool,),  # participants wait until a moderator is in
}
MODES = ("group", "lecture")
SETTING_RANGES: dict[str, tuple[int, int]] = {
    "duration": (1, 1440),
    "max_active_talkers": (1, 12),
    "participants": (1, 20_000),
    "moderators": (0, 100),
}
"""Inclusive bounds of the numeric settings: minutes (a day at most), EnableX's 12 active
talkers, and head counts (a room may hold every bot of one config); ``participants`` and
``moderators`` may be digit strings, as EnableX sends them."""


def permissions_for(role: str) -> Json:
    """Permissions as ``user-connected`` shows them; viewers may not publish."""
    moderator = role == "moderator"
    return {
        "publish": role in PUBLISHING_ROLES,
        "subscribe": True,
        "record": moderator,
        "stats": moderator,
        "controlhandlers": moderator,
    }


def normalise_settings(settings: object, max_talkers: int) -> Json:
    """Validated settings with defaults filled in; raises BadRequest naming the field."""
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise BadRequest("field 'settings' must be an object")
    for key, value in settings.items():
        types = SETTING_TYPES.get(key)
        if types is None:
            continue  # unknown settings are kept as given: EnableX has many more
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            names = " or ".join(t.__name__ for t in types)
            raise BadRequest(f"field 'settings.{key}' must be {names}")
    for key, (low, high) in SETTING_RANGES.items():
        if key not in settings:
            continue
        value = settings[key]
        number = (
            int(value) if isinstance(value, int) or (isinstance(value, str) and value.isdigit()) else None
        )
        if number is None or not low <= number <= high:
            raise BadRequest(
                f"field 'settings.{key}' must be a whole number from {low} to {high}, not {value!r}"
            )
    if settings.get("quality", "SD") not in QUALITIES:
        raise BadRequest(f"field 'settings.quality' must be one of {', '.join(QUALITIES)}")
    if settings.get("mode", "group") not in MODES:
        raise BadRequest(f"field 'settings.mode' must be one of {', '.join(MODES)}")
    out = {**DEFAULT_SETTINGS, "max_active_talkers": max_talkers}
    out.update(settings)
    return out


def _now_iso() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass(kw_only=True)
class Stream:
    """A published stream; others hear of it (``onAddStream``) once its media leg is ready."""

    id: int
    client_id: str
    audio: bool
    video: bool
    data: bool = False
    screen: bool = False
    name: str = ""
    state: StreamState = "connecting"

    @property
    def announced(self) -> bool:
        return self.state == "ready"

    def info(self) -> StreamInfo:
        return StreamInfo(
            id=self.id,
            client_id=self.client_id,
            audio=self.audio,
            video=self.video,
            data=self.data,
            screen=self.screen,
            name=self.name,
            actual_name=self.name,
        )


@dataclass(kw_only=True)
class Participant:
    """One participant, on one socket at a time. ``pending`` holds events for it until its
    room-connected is out. ``phase`` is the server's view of it (``bot.proto`` participant
    table), moved only by the presence code; while it is away (its socket closed without
    ``drop``: the reconnection grace period) ``sid`` is empty. ``stale_streams`` are the
    streams of its previous socket after a rejoin, removed when it publishes again. ``bw_low``
    are its streams judged low; ``bw_forced`` is set while an injected alert overrides the
    detector."""

    client_id: str
    sid: str
    name: str
    role: str
    user_ref: str = ""
    data: Json = field(default_factory=dict)
    jti: str = ""
    audio_muted: bool = False
    video_muted: bool = False
    announced: bool = False
    pending: list[ServerEvent] = field(default_factory=list)
    subscriptions: set[int] = field(default_factory=set)
    stale_streams: set[int] = field(default_factory=set)
    bw_low: set[int] = field(default_factory=set)
    bw_forced: bool = False
    phase: PhaseMachine[ParticipantPhase] = field(default_factory=PhaseMachine.participant, repr=False)

    @property
    def can_publish(self) -> bool:
        return self.role in PUBLISHING_ROLES

    @property
    def away(self) -> bool:
        return self.phase.phase is ParticipantPhase.AWAY

    def user_info(self) -> UserInfo:
        return UserInfo(
            client_id=self.client_id,
            name=self.name,
            role=self.role,
            user_ref=self.user_ref,
            permissions=permissions_for(self.role),
            audio_muted=self.audio_muted,
            video_muted=self.video_muted,
            data=dict(self.data),
        )


@dataclass(frozen=True, kw_only=True)
class Departure:
    """What a leaving participant left behind, in the order others must hear of it."""

    participant: Participant
    streams: list[Stream]


@dataclass(kw_only=True)
class Room:
    room_id: str
    name: str
    owner_ref: str = ""
    settings: Json = field(default_factory=dict)
    created: str = field(default_factory=_now_iso)
    conf_num: str = field(default_factory=lambda: f"{secrets.randbelow(10**8):08d}")
    participants: dict[str, Participant] = field(default_factory=dict)
    streams: dict[int, Stream] = field(default_factory=dict)
    last_stream_id: int = 0
    retired: dict[int, str] = field(default_factory=dict)
    """Streams the server removed (peer closed, media failed, replaced) -> their owner, so the
    owner's late ``unpublish`` is acknowledged once instead of refused."""

    @classmethod
    def from_rest(cls, body: Json, last_stream_id: int = 0) -> Room:
        """A room as :meth:`to_rest` described it (from the store)."""
        return cls(
            room_id=str(body["room_id"]),
            name=str(body["name"]),
            owner_ref=str(body.get("owner_ref", "")),
            settings=dict(body.get("settings", {})),
            created=str(body.get("created") or _now_iso()),
            conf_num=str(body.get("conf_num", "")),
            last_stream_id=last_stream_id,
        )

    # ------------------------------------------------------------------ descriptions

    def to_rest(self) -> Json:
        """The room as the REST API returns it."""
        return {
            "room_id": self.room_id,
            "name": self.name,
            "owner_ref": self.owner_ref,
            "conf_num": self.conf_num,
            "created": self.created,
            "settings": dict(self.settings),
        }

    def to_meta(self) -> Json:
        """``room-connected.room``: what the official client reads (PROTOCOL.md section 3)."""
        keys = (
            "mode",
            "moderators",
            "participants",
            "quality",
            "active_talker",
            "auto_recording",
            "canvas",
            "description",
            "abwd",
        )
        settings = {k: self.settings[k] for k in keys if k in self.settings}
        settings.setdefault("media_configuration", "default")
        return {
            "name": self.name,
            "conf_num": self.conf_num,
            "owner_ref": self.owner_ref,
            "created": self.created,
            "settings": settings,
            "sharePermissions": {"screen": {"state": "idle"}, "canvas": {"state": "idle"}},
        }

    @property
    def quality(self) -> str:
        return str(self.settings.get("quality", "SD"))

    # ------------------------------------------------------------------ participants

    def add_participant(self, participant: Participant) -> None:
        self.participants[participant.client_id] = participant

    def others(self, client_id: str) -> Iterator[Participant]:
        return (p for p in list(self.participants.values()) if p.client_id != client_id)

    def ready_streams(self, exclude_client: str | None = None) -> list[Stream]:
        return [s for s in self.streams.values() if s.announced and s.client_id != exclude_client]

    def remove_participant(self, client_id: str) -> Departure | None:
        """Forget a participant and its streams; None if it was not here (idempotent)."""
        participant = self.participants.pop(client_id, None)
        if participant is None:
            return None
        streams = [s for s in self.streams.values() if s.client_id == client_id]
        for stream in streams:
            del self.streams[stream.id]
        for other in self.participants.values():
            other.subscriptions.difference_update(s.id for s in streams)
        for stream_id in [i for i, owner in self.retired.items() if owner == client_id]:
            del self.retired[stream_id]
        return Departure(participant=participant, streams=streams)

    # ------------------------------------------------------------------ streams

    def add_stream(self, participant: Participant, **fields: Any) -> Stream:
        """A new stream with an id unique in this room (ids are never reused)."""
        self.last_stream_id += 1
        stream = Stream(id=self.last_stream_id, client_id=participant.client_id, **fields)
        self.streams[stream.id] = stream
        return stream

    def owned_stream(self, client_id: str, stream_id: int) -> Stream | None:
        stream = self.streams.get(stream_id)
        return stream if stream is not None and stream.client_id == client_id else None

    def remove_stream(self, stream_id: int, *, retire: bool = False) -> Stream | None:
        """Forget a stream; ``retire`` remembers its owner for one late ``unpublish``."""
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            for p in self.participants.values():
                p.subscriptions.discard(stream_id)
                p.stale_streams.discard(stream_id)
                p.bw_low.discard(stream_id)
            if retire:
                self.retired[stream_id] = stream.client_id
        return stream

    def take_retired(self, client_id: str, stream_id: int) -> bool:
        """Whether ``stream_id`` was ``client_id``'s and removed by the server (once)."""
        if self.retired.get(stream_id) != client_id:
            return False
        del self.retired[stream_id]
        return True

    def initial_num_ats(self, max_talkers: int) -> int:
        """Large enough that a joiner subscribes to every stream listed (PROTOCOL.md 5)."""
        return max([max_talkers, *self.streams.keys()])


class RoomRegistry:
    """All rooms of one server (no module-level state: many servers share a process).

    Rooms are written through to ``store`` (created, deleted, last stream id) and read back
    from it at start, so a restarted server with the same data directory has them again."""

    def __init__(self, max_talkers: int, store: Store | None = None) -> None:
        self._rooms: dict[str, Room] = {}
        self.max_talkers = max_talkers
        self.store = store or Store(None)
        for body, last_stream_id in self.store.rooms():
            room = Room.from_rest(body, last_stream_id)
            self._rooms[room.room_id] = room

    def save_stream_ids(self, room: Room) -> None:
        """Persist the room's last stream id (ids are never reused, even across a restart)."""
        self.store.save_last_stream_id(room.room_id, room.last_stream_id)

    def create(self, name: object, settings: object = None, owner_ref: object = "") -> Room:
        if not isinstance(name, str) or not name.strip():
            raise BadRequest("field 'name' is required and must be a non-empty string")
        if not isinstance(owner_ref, str):
            raise BadRequest("field 'owner_ref' must be a string")
        room = Room(
            room_id=secrets.token_hex(12),
            name=name,
            owner_ref=owner_ref,
            settings=normalise_settings(settings, self.max_talkers),
        )
        self._rooms[room.room_id] = room
        self.store.save_room(room.room_id, room.to_rest(), room.last_stream_id)
        return room

    def get(self, room_id: str) -> Room:
        room = self._rooms.get(room_id)
        if room is None:
            raise RoomNotFound(f"no room with id {room_id!r}")
        return room

    def find(self, room_id: str) -> Room | None:
        return self._rooms.get(room_id)

    def delete(self, room_id: str) -> Room:
        room = self.get(room_id)
        del self._rooms[room_id]
        self.store.delete_room(room_id)
        return room

    def __iter__(self) -> Iterator[Room]:
        return iter(list(self._rooms.values()))

    def __len__(self) -> int:
        return len(self._rooms)


def check_role(role: object) -> str:
    if not isinstance(role, str) or role not in ROLES:
        raise BadRequest(f"field 'role' must be one of {', '.join(ROLES)}")
    return role


def as_mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return value
