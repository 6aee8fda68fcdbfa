"""What the SDK knows about the room: who is in it and which streams exist.

Kept from ``room-connected`` and updated by the dispatcher's events; getters hand out the
wire-named dictionaries a Flutter app sees (``clientId``, ``name``, ...), as copies.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bot.proto import RoomConnected, StreamInfo, UserInfo, UserMuteChanged

Json = dict[str, Any]


class RoomState:
    """Participants and streams of the room we are in (ourselves included in ``users``)."""

    def __init__(self, connected: RoomConnected, max_talkers: int | None = None) -> None:
        self.connected = connected
        self.room_id = connected.room_id
        self.client_id = connected.client_id
        self.me = connected.user
        self.room: Json = dict(connected.room)
        self.max_talkers = max_talkers if max_talkers is not None else connected.max_talkers
        self.users: dict[str, UserInfo] = {u.client_id: u for u in connected.user_list}
        self.users.setdefault(self.me.client_id, self.me)
        self.streams: dict[int, StreamInfo] = {s.id: s for s in connected.streams}

    def add_user(self, user: UserInfo) -> None:
        self.users[user.client_id] = user
        if user.client_id == self.client_id:
            self.me = user

    def remove_user(self, client_id: str) -> UserInfo | None:
        return self.users.pop(client_id, None)

    def add_stream(self, stream: StreamInfo) -> None:
        self.streams[stream.id] = stream

    def remove_stream(self, stream_id: int) -> StreamInfo | None:
        return self.streams.pop(stream_id, None)

    def apply_mute(self, event: UserMuteChanged) -> None:
        user = event.user or self.users.get(event.client_id)
        if user is None:
            return
        self.add_user(_muted(user, event.kind, event.muted))

    def set_self_muted(self, kind: str, muted: bool) -> None:
        self.add_user(_muted(self.me, kind, muted))

    def user_list(self) -> list[Json]:
        return [u.to_payload() for u in self.users.values()]

    def stream_list(self) -> list[Json]:
        return [s.to_payload() for s in self.streams.values()]

    def connected_payload(self) -> Json:
        """``on_room_connected``: ``{streams, users, room, me}`` plus the ids."""
        return {
            "streams": self.stream_list(),
            "users": self.user_list(),
            "room": dict(self.room),
            "me": self.me.to_payload(),
            "roomId": self.room_id,
            "clientId": self.client_id,
            "maxTalkers": self.max_talkers,
        }


def _muted(user: UserInfo, kind: str, muted: bool) -> UserInfo:
    if kind == "audio":
        return replace(user, audio_muted=muted)
    return replace(user, video_muted=muted)
