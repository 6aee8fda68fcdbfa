"""Joining, losing the connection, rejoining and leaving: the sequences of an
:class:`~bot.rtc.EnxRtc` that involve every collaborator.

The phase moves here, and only through ``bot.proto``'s client table: ``join`` (JOIN is taken
by the facade) -> JOINED; a loss -> LOST, then REJOINED or GAVE_UP; ``disconnect()``, a fatal
loss or a failed join -> LEAVE / JOIN_FAILED, then CLOSED once everything is closed. The
attempts themselves are :class:`~bot.rtc.reconnector.Reconnector`'s; what a session is,
:class:`~bot.rtc.session.RoomSession`'s.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from urllib.parse import urlsplit

from bot.proto import IN_ROOM, ErrorCode, Phase, TokenEnvelope, Trigger

from . import reconnect
from .callbacks import Json
from .dispatch import Dispatcher
from .errors import MediaError, RoomError, SignallingError
from .messages import Rejoin
from .publisher import LocalPublisher
from .reconnect import GiveUp, ReconnectPolicy
from .reconnector import Reconnector, Rejoined
from .room_control import RoomControl
from .session import Context, RoomSession
from .signalling import SocketClosed
from .state import RoomState
from .stats_payload import collect
from .subscriber import RemoteSubscriptions

NORMAL_DISCONNECT: Json = {"cause": int(ErrorCode.NORMAL_DISCONNECT), "msg": "normal-disconnect"}
UNEXPECTED_DISCONNECT: Json = {
    "cause": int(ErrorCode.UNEXPECTED_DISCONNECT),
    "msg": "unexpected-disconnection",
}
LEFT = (Phase.DISCONNECTING, Phase.DISCONNECTED)


class Lifecycle:
    """The room's lifetime for one :class:`~bot.rtc.EnxRtc` (see the module docstring)."""

    def __init__(self, ctx: Context, publisher: LocalPublisher, subscriber: RemoteSubscriptions) -> None:
        self._ctx = ctx
        self._publisher = publisher
        self._subscriber = subscriber
        self.control = RoomControl(ctx, publisher, self._ended)
        self.dispatcher = Dispatcher(
            ctx,
            publisher,
            subscriber,
            self._connection_lost,
            more=self.control.handlers(),
        )
        self._reconnector: Reconnector | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._stats_task: asyncio.Task[None] | None = None
        self._leaving: asyncio.Future[None] | None = None
        self._disconnected: asyncio.Future[Json] | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ joining

    async def _open(
        self, envelope: TokenEnvelope, rejoin: Rejoin | None = None
    ) -> tuple[RoomSession, RoomState]:
        """A new session (the live one from now on) up to ``room-connected``."""
        session = RoomSession(self._ctx, envelope)
        self._ctx.session = session
        room = await session.open(rejoin)
        for kind in ("audio", "video"):  # our own mute state, as the room will hear it
            room.set_self_muted(kind, not self._publisher.media.sending(kind))
        return session, room

    async def join(self, envelope: TokenEnvelope) -> None:
        """The first join: session, ``on_room_connected``, the dispatcher, publishing."""
        ctx = self._ctx
        session, room = await self._open(envelope)
        if not ctx.phase.can(Trigger.JOINED):  # disconnect() came first
            raise SignallingError("join_room interrupted by disconnect()")
        ctx.phase.step(Trigger.JOINED)
        ctx.log.debug("room_joined", users=len(room.users), streams=len(room.streams))
        await self._ctx.fire("on_room_connected", room.connected_payload())
        if not ctx.connected:  # the callback disconnected
            return
        self.dispatcher.start(session)
        every = self._subscriber.options.stats_interval_s
        if every is not None:
            self._stats_task = asyncio.create_task(self._report_stats(every), name=f"{ctx.label}-stats")
        self._subscriber.on_joined(room)
        if self._publisher.may_publish(room):
            try:
                self._publisher.start(session, room)
            except Exception as exc:  # e.g. aiortc refusing the ICE configuration
                ctx.log.exception("publish_failed")
                ctx.failed("publisher", exc)
                error = MediaError(f"cannot start publishing: {exc}")
                await self._ctx.fire("on_room_error", error.to_payload())

    async def join_failed(self, err: RoomError | None) -> None:
        """A join that did not complete: report it (unless we are leaving), free everything."""
        ctx = self._ctx
        if ctx.phase.phase in LEFT:
            return  # disconnect() interrupted the join; it does the cleaning
        if err is not None:
            # the owner hears it as on_room_error (the agent's room_error line): DEBUG here
            ctx.log.debug("join_refused", code=err.code, msg=err.msg)
            await self._ctx.fire("on_room_error", err.to_payload())
            if ctx.phase.phase in LEFT:
                return  # the callback disconnected, and cleaned
        ctx.phase.step(Trigger.JOIN_FAILED if ctx.phase.can(Trigger.JOIN_FAILED) else Trigger.LEAVE)
        await self._teardown(self._detach(), leave=False)
        self._publisher.stop_owned_tracks()
        ctx.phase.step(Trigger.CLOSED)
        self._resolve_disconnected(
            {"cause": err.code, "msg": err.msg} if err is not None else UNEXPECTED_DISCONNECT
        )

    async def _report_stats(self, every: float) -> None:
        """``on_stats`` every ``every`` seconds while in the room (skipped while reconnecting)."""
        ctx = self._ctx
        while ctx.phase.phase in IN_ROOM:
            await asyncio.sleep(every)
            if not ctx.connected:
                continue
            try:
                payload = await collect(self._publisher.publication, self._subscriber.legs.values(), ctx.log)
            except Exception as exc:  # never let monitoring end the session
                ctx.log.exception("stats_failed")
                ctx.failed("stats", exc)
                continue
            await self._ctx.fire("on_stats", payload)

    # ------------------------------------------------------------------ losing the connection

    async def _connection_lost(self, reason: str) -> None:
        """The connection broke (socket closed, leg failed or silent). Without reconnection
        the room is left (2002); during a rejoin attempt, that attempt fails; otherwise drop
        the session, tell the app, and start reconnecting."""
        ctx = self._ctx
        if ctx.reconnecting:
            if self._reconnector is not None:
                self._reconnector.lost(reason)
            return
        if not ctx.connected:
            return
        envelope = ctx.envelope
        if not ctx.room_info.allow_reconnect or envelope is None:  # no token: no rejoin
            ctx.log.debug("connection_lost", reason=reason, reconnect=False)
            await self.leave(UNEXPECTED_DISCONNECT, leave=False)
            return
        lost_at = time.monotonic()
        gone = self._path_gone(envelope)  # before the leg (and its selected pair) is closed
        ctx.phase.step(Trigger.LOST)
        await self._teardown(self._detach(), leave=False, retire=True)  # this dispatcher stops after
        payload = {"cause": int(ErrorCode.NETWORK_DISCONNECTED), "msg": reason if gone is None else gone}
        if gone is None:
            ctx.log.debug("connection_lost", reason=reason)
            await self._ctx.fire("on_connection_lost", payload)
        else:
            ctx.log.debug("connection_interrupted", reason=reason, path=gone)
            await self._ctx.fire("on_connection_interrupted", payload)
        if not ctx.reconnecting:
            return  # the callback disconnected
        self._reconnector = Reconnector(
            ReconnectPolicy.from_room_info(ctx.room_info),
            rejoin=self._rejoin,
            abandon=self._abandon_attempt,
            wait_for_network=self._wait_for_network,
            announce=self._announce,
            log=lambda: ctx.log,
            on_failure=ctx.failed,
        )
        self._reconnecting = asyncio.create_task(
            self._reconnect(reason, lost_at), name=f"{ctx.label}-reconnect"
        )

    def _path_gone(self, envelope: TokenEnvelope) -> str | None:
        """Whether the local network path changed (Flutter ``onConnectionInterrupted``): the
        address our media used is gone, or no route leads to the server any more."""
        publication = self._publisher.publication
        gone = None if publication is None else publication.leg.path_gone()
        if gone is not None:
            return gone
        return reconnect.route_problem(urlsplit(f"//{envelope.host}").hostname or envelope.host)

    async def _reconnect(self, reason: str, lost_at: float) -> None:
        """Run the attempts, then act on the outcome: back in the room, or leave (11xx)."""
        assert self._reconnector is not None
        outcome = await self._reconnector.run(reason, lost_at)
        ctx = self._ctx
        if isinstance(outcome, Rejoined) and ctx.phase.can(Trigger.REJOINED):
            room = ctx.room
            assert room is not None
            ctx.phase.step(Trigger.REJOINED)
            elapsed_ms = round((time.monotonic() - lost_at) * 1000, 1)
            attempt, stream_id = outcome.attempt, outcome.stream_id
            ctx.log.debug(
                "user_reconnect_success", attempt=attempt, elapsed_ms=elapsed_ms, stream_id=stream_id
            )
            await self._ctx.fire(
                "on_user_reconnect_success",
                {
                    **room.connected_payload(),
                    "attempt": attempt,
                    "elapsed_ms": elapsed_ms,
                    "streamId": stream_id,
                },
            )
        elif isinstance(outcome, GiveUp) and ctx.reconnecting and self._leaving is None:
            self._leaving = asyncio.ensure_future(
                self._finish(outcome.payload, leave=False, trigger=Trigger.GAVE_UP)
            )

    async def _wait_for_network(self, deadline: float) -> None:
        envelope, room = self._ctx.envelope, self._ctx.room
        assert envelope is not None
        url = None if room is None else room.connected.internet_detection_url
        await reconnect.wait_for_network(envelope.host, url, deadline, self._ctx.log)

    async def _announce(self, attempt: int, attempts: int, msg: str) -> bool:
        await self._ctx.fire("on_reconnect", {"attempt": attempt, "attempts": attempts, "msg": msg})
        return self._ctx.reconnecting

    async def _rejoin(self, attempt: int, within: float) -> int | None:
        """One rejoin attempt: a new session announcing the old client id, then (if we
        publish) a new stream, up to ``ready``. Returns its id. Raises RoomError/TimeoutError;
        whatever it opened is left for :meth:`_abandon_attempt`."""
        ctx, reconnector = self._ctx, self._reconnector
        room, envelope = ctx.room, ctx.envelope
        assert room is not None and envelope is not None and reconnector is not None
        rejoin = Rejoin(
            attempt=attempt,
            old_client_id=ctx.last_client_id or room.client_id,
            room_id=room.room_id,
            role=room.me.role,
            name=room.me.name,
        )
        self._publisher.reset_for_rejoin()
        async with asyncio.timeout(within):
            session, new_room = await self._open(envelope, rejoin)
            self.dispatcher.start(session)
            self._subscriber.on_joined(new_room)  # as the official client: re-subscribe, then publish
            if not self._publisher.may_publish(new_room):
                return None
            return await reconnector.unless_lost(self._publisher.start_awaited(session, new_room))

    async def _abandon_attempt(self) -> None:
        """Close what a failed attempt opened (its session, its leg), in the background."""
        session = self._detach()
        await self.dispatcher.stop()
        await self._teardown(session, leave=False, retire=True)

    # ------------------------------------------------------------------ leaving

    async def _ended(self, payload: Json) -> None:
        """The server ended our session (``room-disconnected``): leave, never reconnect."""
        await self.leave(payload, leave=False)

    async def leave(self, payload: Json, *, leave: bool) -> None:
        """Leave (once, whoever asks first); safe from inside a callback."""
        if self._leaving is None:
            self._leaving = asyncio.ensure_future(self._finish(payload, leave=leave, trigger=Trigger.LEAVE))
        await asyncio.shield(self._leaving)

    async def _finish(self, payload: Json, *, leave: bool, trigger: Trigger) -> None:
        """The one way out of a room: stop the dispatcher (and reconnection), close the leg,
        say goodbye (when ``leave``), close the socket, stop our own tracks, then the
        callbacks."""
        ctx = self._ctx
        was = ctx.phase.phase
        if was in LEFT:
            return  # a failed join already cleaned up
        ctx.phase.step(trigger)
        if was is Phase.CONNECTING:
            ctx.post(SocketClosed(reason="disconnect() called"))  # wakes a waiting join
        await self._stop(self._reconnecting)
        await self.dispatcher.stop()
        await self._stop(self._stats_task)
        self._reconnecting = self._stats_task = None
        stream_id = self._publisher.stream_id
        await self._teardown(self._detach(), leave=leave)
        self._subscriber.forget()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        self._publisher.stop_owned_tracks()
        ctx.phase.step(Trigger.CLOSED)
        ctx.log.debug("room_disconnected", cause=payload["cause"], msg=payload["msg"])
        if was in IN_ROOM:
            if stream_id is not None and leave and was is Phase.CONNECTED:
                await self._ctx.fire(
                    "on_unpublished_stream", {"result": "0", "msg": "success", "streamId": stream_id}
                )
            await self._ctx.fire("on_room_disconnected", dict(payload))
        self._resolve_disconnected(payload)

    async def _stop(self, task: asyncio.Task[None] | None) -> None:
        """Cancel reconnection or the stats task, unless it is the caller or inside an app
        callback (which may be awaiting this very disconnect): then it sees the phase."""
        if task is None or task.done() or task is asyncio.current_task() or task in self._ctx.firing:
            return
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task

    def _detach(self) -> RoomSession | None:
        """The live session stops being live (its dispatcher stops after the current item)."""
        session, self._ctx.session = self._ctx.session, None
        return session

    async def _teardown(self, session: RoomSession | None, *, leave: bool, retire: bool = False) -> None:
        """Close the subscribe legs, the publish leg and ``session``'s socket (after
        ``unpublish`` and ``drop`` if ``leave``). Leaves the callbacks and the phase to the
        caller. ``retire``: the socket is closed in the background (a dead link may hold its
        close for a second)."""
        await self._subscriber.aclose()
        publication = await self._publisher.detach()
        await self._ctx.cancel_tasks()
        stream_id = None if publication is None else publication.stream_id
        if publication is not None:
            await publication.aclose()
        if session is None:
            return
        if retire:
            session.retire(self._retiring)
        else:
            await session.aclose(leave=leave, stream_id=stream_id)

    async def wait_disconnected(self) -> Json:
        return await asyncio.shield(self._disconnected_future())

    def _disconnected_future(self) -> asyncio.Future[Json]:
        if self._disconnected is None:
            self._disconnected = asyncio.get_running_loop().create_future()
        return self._disconnected

    def _resolve_disconnected(self, payload: Json) -> None:
        future = self._disconnected_future()
        if not future.done():
            future.set_result(dict(payload))
