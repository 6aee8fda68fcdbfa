"""Moderator controls of an :class:`~bot.rtc.EnxRtc` (Flutter ``dropUser``, ``hardMute``,
``hardMuteUserAudio``, ``startRecord``, ...) and what a participant does when a moderator acts
on it (docs/protocol/moderation.md).

:class:`ModeratorControls` is a mixin of ``EnxRtc``: the callback slots (class defaults None,
set per instance by the app) and the methods, each one request acknowledged by the server;
a refusal raises :class:`~bot.rtc.RoomError` with the server's code (5116, 5001, ...) after
the Flutter acknowledgement callback got ``{result: code, msg}``.

:class:`ModerationEvents` is the dispatcher's part: a hard mute stops the kind at the sender
(as a self mute does, no renegotiation) until released, and ``mute_self_audio(False)``
raises 1168 meanwhile; ``room-disconnected`` ends the session without reconnecting
(``on_room_disconnected {cause: 2001, msg: "disconnected-by-moderator"}``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from bot.proto import (
    HARD_MUTE_USER_EVENTS,
    IN_ROOM,
    ClientEvent,
    DropRequest,
    ErrorCode,
    HardMuteRoom,
    HardMuteUser,
    HardUnmuteRoom,
    MediaKind,
    RoomHardMuted,
    RoomHardUnmuted,
    RoomRecordOff,
    RoomRecordOn,
    StartRecord,
    StopRecord,
    hard_mute_user_event,
)

from .callbacks import Callback, CallbackName, Json
from .errors import RoomError
from .publisher import LocalPublisher
from .session import Context

MODERATION_TIMEOUT_S = 10.0


def _ack_callback(kind: MediaKind, muted: bool) -> CallbackName:
    if kind == "audio":
        return "on_hard_muted_audio" if muted else "on_hard_unmuted_audio"
    return "on_hard_muted_video" if muted else "on_hard_unmuted_video"


def _notice_callback(kind: MediaKind, muted: bool) -> CallbackName:
    if kind == "audio":
        return "on_received_hard_mute_audio" if muted else "on_received_hard_unmute_audio"
    return "on_received_hard_mute_video" if muted else "on_received_hard_unmute_video"


class ModeratorControls:
    """The moderation half of ``EnxRtc`` (see the module docstring)."""

    _ctx: Context

    on_audio_event: Callback | None = None
    """``{result: 0, msg: "Audio Off" | "Audio On"}`` after :meth:`mute_self_audio`."""
    on_video_event: Callback | None = None
    """``{result: 0, msg: "Video Off" | "Video On"}`` after :meth:`mute_self_video`."""
    on_received_hard_mute: Callback | None = None
    """The room is hard-muted (our audio stops): ``{moderator, msg, status: true}``."""
    on_received_hard_unmute: Callback | None = None
    on_received_hard_mute_audio: Callback | None = None
    """A moderator hard-muted our audio: ``{clientId, moderator, msg}``."""
    on_received_hard_unmute_audio: Callback | None = None
    on_received_hard_mute_video: Callback | None = None
    on_received_hard_unmute_video: Callback | None = None
    on_room_recording_on: Callback | None = None
    """``{moderatorId, msg}``: the room is being recorded."""
    on_room_recording_off: Callback | None = None
    on_ack_drop_user: Callback | None = None
    """The moderator's ack of :meth:`drop_user`: ``{result, msg, clientIds, notFound}``."""
    on_hard_muted: Callback | None = None
    on_hard_unmuted: Callback | None = None
    on_hard_muted_audio: Callback | None = None
    on_hard_unmuted_audio: Callback | None = None
    on_hard_muted_video: Callback | None = None
    on_hard_unmuted_video: Callback | None = None
    on_start_recording_event: Callback | None = None
    on_stop_recording_event: Callback | None = None

    async def drop_user(self, client_ids: Iterable[str]) -> Json:
        """Drop these participants from the room (moderator only, Flutter ``dropUser``): each
        hears ``on_room_disconnected`` 2001 and does not rejoin. RoomError 5116 for a
        participant, 1155 when none of them is in the room."""
        ids = list(client_ids)
        if not ids or not all(isinstance(c, str) and c for c in ids):
            raise RoomError(ErrorCode.INVALID_PARAMETERS, "drop_user needs a non-empty list of client ids")
        return await self._moderate(DropRequest(client_ids=tuple(ids)), "on_ack_drop_user")

    async def hard_mute(self) -> Json:
        """Hard-mute the room: every participant's audio stops until :meth:`hard_unmute`
        (moderator only; 5001 for a participant, 5038 when it is hard-muted already)."""
        return await self._moderate(HardMuteRoom(), "on_hard_muted")

    async def hard_unmute(self) -> Json:
        """Release the room's hard mute (5002 for a participant, 5039 when not hard-muted)."""
        return await self._moderate(HardUnmuteRoom(), "on_hard_unmuted")

    async def hard_mute_user_audio(self, client_id: str) -> Json:
        """Stop one participant's audio until released (1168 for a participant, 1177 when it
        is hard-muted already, 1155 for no such participant)."""
        return await self._hard_mute_user(client_id, "audio", True)

    async def hard_unmute_user_audio(self, client_id: str) -> Json:
        return await self._hard_mute_user(client_id, "audio", False)

    async def hard_mute_user_video(self, client_id: str) -> Json:
        return await self._hard_mute_user(client_id, "video", True)

    async def hard_unmute_user_video(self, client_id: str) -> Json:
        return await self._hard_mute_user(client_id, "video", False)

    async def start_record(self) -> Json:
        """Turn the room's recording notice on: the others hear ``on_room_recording_on``
        (moderator only; 5007 for a participant, 5034 when recording already)."""
        return await self._moderate(StartRecord(), "on_start_recording_event")

    async def stop_record(self) -> Json:
        return await self._moderate(StopRecord(), "on_stop_recording_event")

    async def _hard_mute_user(self, client_id: str, kind: MediaKind, muted: bool) -> Json:
        if not isinstance(client_id, str) or not client_id:
            raise RoomError(ErrorCode.INVALID_PARAMETERS, "a client id is needed")
        request = hard_mute_user_event(kind, muted)(client_id=client_id)
        return await self._moderate(request, _ack_callback(kind, muted))

    async def _moderate(self, request: ClientEvent, callback: CallbackName) -> Json:
        ctx = self._ctx
        session = ctx.session
        if ctx.phase.phase not in IN_ROOM or session is None:
            raise RoomError(ErrorCode.ROOM_NOT_CONNECTED, "not in a room")
        ack = await session.signalling.request(request, MODERATION_TIMEOUT_S)
        payload = ack.to_payload()
        ctx.log.debug("moderation_ack", callback=callback, result=ack.result)
        await ctx.fire(callback, payload)
        if not ack.ok:
            raise RoomError(ack.result, ack.msg or "refused by the room")
        return payload


class ModerationEvents:
    """The dispatcher's handlers of moderation notices. A moderator's drop arrives as
    ``room-disconnected``, which :mod:`.room_control` handles for every cause."""

    def __init__(self, ctx: Context, publisher: LocalPublisher) -> None:
        self._ctx = ctx
        self._publisher = publisher

    def handlers(self) -> Mapping[type, Callable[[Any], Awaitable[None]]]:
        table: dict[type, Callable[[Any], Awaitable[None]]] = {
            RoomHardMuted: self._room_muted,
            RoomHardUnmuted: self._room_muted,
            RoomRecordOn: self._recording,
            RoomRecordOff: self._recording,
        }
        for cls in HARD_MUTE_USER_EVENTS:
            table[cls] = self._user_muted
        return table

    async def _room_muted(self, item: RoomHardMuted) -> None:
        muted = item.MUTED
        room = self._ctx.room
        if room is not None and room.me.role == "moderator":
            return  # a room-wide hard mute is for participants
        if not await self._publisher.hard_mute("audio", "room", muted):
            self._ctx.log.debug("hard_mute_unchanged", scope="room", muted=muted)
            return  # e.g. the state a rejoin is told again
        self._ctx.log.debug("room_hard_muted", muted=muted, moderator=item.moderator)
        callback: CallbackName = "on_received_hard_mute" if muted else "on_received_hard_unmute"
        await self._ctx.fire(callback, item.to_payload())

    async def _user_muted(self, item: HardMuteUser) -> None:
        room = self._ctx.room
        if room is not None and item.client_id != room.client_id:
            self._ctx.log.debug("hard_mute_not_ours", other=item.client_id)
            return
        if not await self._publisher.hard_mute(item.KIND, "user", item.MUTED):
            self._ctx.log.debug("hard_mute_unchanged", scope="user", kind=item.KIND, muted=item.MUTED)
            return
        await self._ctx.fire(_notice_callback(item.KIND, item.MUTED), item.to_payload())

    async def _recording(self, item: RoomRecordOn) -> None:
        callback: CallbackName = "on_room_recording_on" if item.ON else "on_room_recording_off"
        await self._ctx.fire(callback, item.to_payload())
