"""The one consumer of a session's inbox: server events and our own legs' reports, in arrival
order, each to its handler in a table keyed by type (as ``bot.server.signalling`` does).

Room events update :class:`~bot.rtc.state.RoomState` before their callback fires; media events
go to the publisher or the subscriptions; a loss (socket closed, publish leg broken) goes to
the owner's ``lost`` (reconnection or leaving); moderation notices to :mod:`.moderation`;
the waiting room, the room clock, the floor and ``room-disconnected`` to :mod:`.room_control`.
A handler that raises is logged (``event_failed``) and reported to
``on_failure("dispatcher", exc)``; the next item is handled.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from types import MappingProxyType
from typing import Any

from bot.proto import (
    IN_ROOM,
    ActiveTalkersUpdated,
    BandwidthEvent,
    DataReceived,
    MediaEngineConnecting,
    RoomConnected,
    StreamAdded,
    StreamRemoved,
    UnknownEvent,
    UserConnected,
    UserDisconnected,
    UserMuteChanged,
)

from .callbacks import CallbackName
from .data import deliver as deliver_data
from .moderation import ModerationEvents
from .publisher import LocalPublisher
from .session import Context, Item, LinkLost, MediaFailed, RoomSession, SubscribeFailed, SubscriptionBroken
from .signalling import SocketClosed
from .subscriber import RemoteSubscriptions

Handler = Callable[[Any], Awaitable[None]]


class Dispatcher:
    """Runs the handler table over the live session's inbox while we are in the room.
    ``lost(reason)`` is the owner's answer to a broken connection."""

    def __init__(
        self,
        ctx: Context,
        publisher: LocalPublisher,
        subscriber: RemoteSubscriptions,
        lost: Callable[[str], Awaitable[None]],
        more: Mapping[type, Handler] | None = None,
    ) -> None:
        self._ctx = ctx
        self._publisher = publisher
        self._subscriber = subscriber
        self._lost = lost
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self.handlers: Mapping[type, Handler] = MappingProxyType(
            {
                SocketClosed: self._socket_closed,
                LinkLost: self._link_lost,
                MediaFailed: publisher.media_failed,
                SubscribeFailed: subscriber.failed,
                SubscriptionBroken: subscriber.broken,
                UserConnected: self._user_connected,
                UserDisconnected: self._user_disconnected,
                StreamAdded: self._stream_added,
                StreamRemoved: self._stream_removed,
                MediaEngineConnecting: self._media_message,
                UserMuteChanged: self._mute_changed,
                ActiveTalkersUpdated: self._talkers,
                BandwidthEvent: publisher.bandwidth,
                RoomConnected: self._room_connected,
                DataReceived: lambda item: deliver_data(ctx, item),
                UnknownEvent: self._unknown,
                **ModerationEvents(ctx, publisher).handlers(),
                **(more or {}),  # the waiting room, the room clock, the floor (room_control.py)
            }
        )

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    def start(self, session: RoomSession) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self._run(session), name=f"{self._ctx.label}-dispatcher")
        return self._task

    async def _run(self, session: RoomSession) -> None:
        ctx = self._ctx
        backlog = deque(session.early)  # arrived before room-connected: first, in order
        while ctx.phase.phase in IN_ROOM and ctx.session is session:
            item: Item = backlog.popleft() if backlog else await session.inbox.get()
            self._busy = True
            try:
                handler = self.handlers.get(type(item))
                if handler is not None:
                    await handler(item)
            except Exception as exc:  # a bug in a handler must not end the session
                ctx.log.exception("event_failed", item=type(item).__name__)
                ctx.failed("dispatcher", exc)
            finally:
                self._busy = False

    async def stop(self) -> None:
        """Cancel the dispatcher while it waits for an event; if it is busy (inside a callback
        that may well be awaiting this very disconnect) let it see the phase and stop."""
        task = self._task
        if task is None or task.done() or task is asyncio.current_task():
            return
        if not self._busy:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    # ------------------------------------------------------------------ the handlers

    def _room(self) -> Any:
        room = self._ctx.room
        assert room is not None
        return room

    async def _socket_closed(self, item: SocketClosed) -> None:
        await self._lost(f"signalling connection closed ({item.reason})")

    async def _link_lost(self, item: LinkLost) -> None:
        if item.publication is self._publisher.publication:
            await self._lost(item.reason)

    async def _user_connected(self, item: UserConnected) -> None:
        user = item.user
        self._room().add_user(user)
        self._ctx.log.debug("remote_user_joined", name=user.name, other=user.client_id)
        await self._ctx.fire("on_user_connected", user.to_payload())

    async def _user_disconnected(self, item: UserDisconnected) -> None:
        self._room().remove_user(item.client_id)
        self._ctx.log.debug("remote_user_left", name=item.name, other=item.client_id)
        await self._ctx.fire("on_user_disconnected", item.to_payload())

    async def _stream_added(self, item: StreamAdded) -> None:
        room, stream = self._room(), item.stream
        if stream.client_id == room.client_id or self._publisher.owns(stream.id):
            self._ctx.log.debug("own_stream_announced", stream_id=stream.id)
            return
        room.add_stream(stream)
        self._ctx.log.debug("remote_stream_added", stream_id=stream.id, other=stream.client_id)
        await self._ctx.fire("on_stream_added", stream.to_payload())
        self._subscriber.stream_added(stream)  # unless the app subscribed from the callback

    async def _stream_removed(self, item: StreamRemoved) -> None:
        stream_id = item.stream_id
        if self._publisher.owns(stream_id):
            self._publisher.stream_removed_by_server()
            return
        self._room().remove_stream(stream_id)
        had_video = await self._subscriber.stream_removed(stream_id)
        self._ctx.log.debug("remote_stream_removed", stream_id=stream_id)
        await self._ctx.fire("on_stream_removed", {"id": stream_id})
        if had_video:
            self._ctx.spawn(self._subscriber.promote_video(), "promote-video")

    async def _media_message(self, item: MediaEngineConnecting) -> None:
        if item.subscriber:
            await self._subscriber.deliver(item)
        else:
            await self._publisher.deliver(item.stream_id, item.msg)

    async def _mute_changed(self, item: UserMuteChanged) -> None:
        self._room().apply_mute(item)
        await self._ctx.fire(_mute_callback(item), item.to_payload())

    async def _talkers(self, item: ActiveTalkersUpdated) -> None:
        self._subscriber.active_talkers(item.active_list)
        await self._ctx.fire("on_active_talker_list", item.to_payload())

    async def _room_connected(self, item: RoomConnected) -> None:
        self._ctx.log.warning("unexpected_room_connected")

    async def _unknown(self, item: UnknownEvent) -> None:
        self._ctx.log.debug("unknown_event", event_name=item.name)


def _mute_callback(event: UserMuteChanged) -> CallbackName:
    if event.kind == "audio":
        return "on_remote_stream_audio_mute" if event.muted else "on_remote_stream_audio_unmute"
    return "on_remote_stream_video_mute" if event.muted else "on_remote_stream_video_unmute"
