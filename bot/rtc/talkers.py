"""Active talkers on the client: the talker count (Flutter ``setTalkerCount``,
``getTalkerCount``), pinning (``pinUsers``, ``unpinUsers``: moderators) and the
``subscribe="talkers"`` mode that follows the room's list.

EnableX rooms are active-talker rooms: the official client plays video only for the streams
that ``active-talkers-updated`` names. ``subscribe="talkers"`` does the same with legs:
every remote stream is received audio only, and the ones in the list (at most
``max_video_subscriptions`` of them, in list order) with video too. A stream entering or leaving
the list is re-subscribed with the new kinds (``unsubscribe``, then ``subscribe``: a short audio
gap), one stream at a time, in the background, from the latest list.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from bot.proto import (
    Ack,
    ClientEvent,
    ErrorCode,
    GetTalkerCount,
    PinUsers,
    RemoteProtocolError,
    SetTalkerCount,
    StreamInfo,
    UnpinUsers,
)

from .errors import RoomError
from .session import Context


async def _request(ctx: Context, event: ClientEvent, what: str) -> Ack:
    session = ctx.session
    if not ctx.connected or session is None:
        raise RoomError(ErrorCode.ROOM_NOT_CONNECTED, f"{what}: not in a room")
    ack = await session.signalling.request(event)
    if not ack.ok:
        raise RoomError(ack.result or ErrorCode.INVALID_PARAMETERS, f"{what}: {ack.msg}")
    return ack


def _count(ack: Ack, what: str) -> int:
    value = ack.fields.get("numTalkers")
    if not isinstance(value, int) or isinstance(value, bool):
        raise RoomError(ErrorCode.INVALID_PARAMETERS, f"{what}: the room answered no numTalkers")
    return value


async def set_talker_count(ctx: Context, count: object) -> int:
    """See :meth:`~bot.rtc.EnxRtc.set_talker_count`."""
    if not isinstance(count, int) or isinstance(count, bool):
        raise RoomError(ErrorCode.INVALID_PARAMETERS, f"setTalkerCount: a number of talkers, not {count!r}")
    try:
        event = SetTalkerCount(count=count)
    except RemoteProtocolError as exc:  # out of range: the same words the server would use
        raise RoomError(ErrorCode.INVALID_PARAMETERS, str(exc)) from None
    ack = await _request(ctx, event, "setTalkerCount")
    value = _count(ack, "setTalkerCount")
    ctx.log.info("talker_count_set", count=value)
    await ctx.fire("on_set_talker_count", {"result": 0, "numTalkers": value})
    return value


async def get_talker_count(ctx: Context) -> int:
    """See :meth:`~bot.rtc.EnxRtc.get_talker_count`."""
    value = _count(await _request(ctx, GetTalkerCount(), "getTalkerCount"), "getTalkerCount")
    await ctx.fire("on_get_talker_count", {"result": 0, "numTalkers": value})
    return value


async def pin_users(ctx: Context, client_ids: object, *, pin: bool) -> list[str]:
    """See :meth:`~bot.rtc.EnxRtc.pin_users`; the room's pinned client ids after it."""
    what = "pinUsers" if pin else "unpinUsers"
    ids = list(client_ids) if isinstance(client_ids, list | tuple) else client_ids
    try:
        payload = {"clients": ids}
        event = PinUsers.from_payload(payload) if pin else UnpinUsers.from_payload(payload)
    except RemoteProtocolError as exc:
        raise RoomError(ErrorCode.INVALID_PARAMETERS, str(exc)) from None
    ack = await _request(ctx, event, what)
    pinned = ack.fields.get("clients")
    return [c for c in pinned if isinstance(c, str)] if isinstance(pinned, list) else []


class _Leg(Protocol):
    @property
    def video(self) -> bool: ...


class Subscriptions(Protocol):
    """What the follower needs of :class:`~bot.rtc.subscriber.RemoteSubscriptions`."""

    @property
    def legs(self) -> Mapping[int, _Leg]: ...

    @property
    def manual(self) -> Mapping[int, Any]: ...

    @property
    def declined(self) -> set[int]: ...

    def start_auto(self, stream: StreamInfo, audio: bool, video: bool) -> None: ...

    async def resubscribe(self, stream: StreamInfo, audio: bool, video: bool) -> bool: ...


def talker_ids(active_list: list[Any], cap: int | None) -> list[int]:
    """The stream ids of an ``activeList``, in order, at most ``cap`` (None: all)."""
    ids: list[int] = []
    for entry in active_list:
        sid = entry.get("streamId") if isinstance(entry, dict) else None
        if isinstance(sid, str) and sid.isdigit():
            sid = int(sid)
        if isinstance(sid, int) and not isinstance(sid, bool) and sid not in ids:
            ids.append(sid)
    return ids if cap is None else ids[:cap]


def wanted(stream: StreamInfo, talkers: list[int]) -> tuple[bool, bool]:
    """``(audio, video)`` to receive of ``stream`` given the talkers to see."""
    return stream.audio, stream.video and stream.id in talkers


class TalkerFollower:
    """``subscribe="talkers"``: keeps the legs in step with the latest active-talker list."""

    def __init__(self, ctx: Context, subscriptions: Subscriptions, cap: int | None) -> None:
        self._ctx = ctx
        self._subs = subscriptions
        self._cap = cap
        self.talkers: list[int] = []
        """Stream ids received with video now (the list's head, at most ``cap``)."""
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def kinds(self, stream: StreamInfo) -> tuple[bool, bool]:
        return wanted(stream, self.talkers)

    def updated(self, active_list: list[Any]) -> None:
        """A new list: follow it (in the background; a newer list while following is taken
        up when the current step ends)."""
        talkers = talker_ids(active_list, self._cap)
        if talkers == self.talkers:
            return
        self.talkers = talkers
        self._ctx.log.debug("talkers_followed", stream_ids=talkers)
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._follow(), name=f"{self._ctx.label}-follow-talkers")
        self._ctx.tasks.add(self._task)
        self._task.add_done_callback(self._ctx.tasks.discard)

    async def _follow(self) -> None:
        while True:
            self._again = False
            try:
                await self._step()
            except RoomError as err:  # the socket went: a rejoin subscribes afresh
                self._ctx.log.info("talkers_follow_failed", code=err.code, msg=err.msg)
                return
            except Exception as exc:
                self._ctx.log.exception("talkers_follow_failed")
                self._ctx.failed("subscriber", exc)
                return
            if not self._again:
                return

    async def _step(self) -> None:
        ctx = self._ctx
        for stream in list((ctx.room.streams if ctx.room is not None else {}).values()):
            if not ctx.connected or self._again:
                return
            room = ctx.room
            if room is None or stream.client_id == room.client_id or stream.id not in room.streams:
                continue
            if stream.id in self._subs.manual or stream.id in self._subs.declined:
                continue
            audio, video = self.kinds(stream)
            leg = self._subs.legs.get(stream.id)
            if leg is None:
                if audio or video:
                    self._subs.start_auto(stream, audio, video)
            elif leg.video != video and (audio or video):
                await self._subs.resubscribe(stream, audio, video)
