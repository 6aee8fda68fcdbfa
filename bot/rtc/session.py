"""One signalling session (socket -> ``token`` -> ``room-connected``), and what the collaborators
of :class:`~bot.rtc.EnxRtc` share.

A :class:`RoomSession` is made per join and per rejoin attempt: its socket, its inbox (the one
queue the dispatcher reads, in server order) and what arrived before ``room-connected``. The
room's state (:class:`~bot.rtc.state.RoomState`) outlives it: the getters answer after a loss
and after leaving, and a rejoin announces the old client id.

:class:`Context` is the little the facade, the publisher, the subscriptions and the dispatcher
have in common: the log (bound to room and client once known), the phase table, the current
session and room, and the two ways to report (fire an application callback, post an item for
the dispatcher).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from bot.proto import (
    Ack,
    DropRequest,
    GetMaxTalkers,
    Phase,
    PhaseMachine,
    RoomConnected,
    TokenEnvelope,
    UnpublishRequest,
)

from .callbacks import CallbackName, Json
from .errors import RoomError, SignallingError
from .messages import Rejoin, client_conn_event, token_request
from .options import LocalInfo, RoomInfo
from .publication import LocalPublication
from .signalling import Inbound, Signalling, SocketClosed, signalling_url
from .state import RoomState
from .subscription import RemoteSubscription
from .waiting_room import Admission

ROOM_CONNECTED_TIMEOUT_S = 10.0
DROP_TIMEOUT_S = 1.0

Fire = Callable[[CallbackName, Json], Awaitable[None]]
FailureHook = Callable[[str, BaseException], None]


@dataclass(frozen=True)
class MediaFailed:
    """Posted to the dispatcher queue by the publish task or a broken leg."""

    publication: LocalPublication
    error: RoomError


@dataclass(frozen=True)
class LinkLost:
    """Posted when a ready publish leg broke or went silent and reconnection is allowed."""

    publication: LocalPublication
    reason: str


@dataclass(frozen=True)
class SubscribeFailed:
    """Posted by a subscription's task when it did not come up."""

    subscription: RemoteSubscription
    error: RoomError


@dataclass(frozen=True)
class SubscriptionBroken:
    """Posted when a ready subscribe leg failed or was closed by the media server."""

    subscription: RemoteSubscription
    reason: str


Item = Inbound | MediaFailed | LinkLost | SubscribeFailed | SubscriptionBroken


class Context:
    """What the collaborators share (see the module docstring). Plain data plus ``post`` and
    ``spawn``: the decisions stay with their owners."""

    def __init__(self, *, label: str, log: Any, fire: Fire, on_failure: FailureHook | None = None) -> None:
        self.label = label
        self.log: Any = log
        self.phase = PhaseMachine.client()
        self.fire = fire
        self.on_failure = on_failure
        """``(where, exc)`` for a failure of the SDK's own background work (after the log)."""
        self.envelope: TokenEnvelope | None = None
        self.local = LocalInfo()
        self.room_info = RoomInfo()
        self.session: RoomSession | None = None
        """The live signalling session (None between a loss and a rejoin, and after leaving)."""
        self.room: RoomState | None = None
        """The room as last known (kept after a loss and after leaving, for the getters)."""
        self.last_client_id: str | None = None
        """What the server last knew us as, for a rejoin."""
        self.tasks: set[asyncio.Task[Any]] = set()
        """Short background requests (mutes, unpublish, video promotion): cancelled on teardown."""
        self.firing: set[asyncio.Task[Any]] = set()
        """Tasks inside an app callback now (which may be awaiting ``disconnect()``: not cancelled)."""

    @property
    def connected(self) -> bool:
        return self.phase.phase is Phase.CONNECTED

    @property
    def reconnecting(self) -> bool:
        return self.phase.phase is Phase.RECONNECTING

    def post(self, item: Item) -> None:
        """For the dispatcher of the live session (dropped when there is none)."""
        if self.session is not None:
            self.session.inbox.put_nowait(item)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=f"{self.label}-{name}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def cancel_tasks(self) -> None:
        for spawned in list(self.tasks):
            if spawned is not asyncio.current_task():
                spawned.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    def failed(self, where: str, exc: BaseException) -> None:
        """Report a background failure (already logged) to the owner's ``on_failure``."""
        report(self.on_failure, where, exc, self.log)


def report(
    hook: Callable[[str, BaseException], None] | None, name: str, exc: BaseException, log: Any
) -> None:
    """Call an owner hook; its own failure is logged, never raised (the room goes on)."""
    if hook is None:
        return
    try:
        hook(name, exc)
    except Exception:
        log.exception("failure_hook_failed", where=name)


class RoomSession:
    """One signalling session: made (with its socket, not yet connected) so that a
    ``disconnect()`` during :meth:`open` can wake it and close it."""

    def __init__(self, ctx: Context, envelope: TokenEnvelope) -> None:
        self._ctx = ctx
        self.envelope = envelope
        self.inbox: asyncio.Queue[Item] = asyncio.Queue()
        self.signalling = Signalling(
            signalling_url(envelope), host=envelope.host, sink=self.inbox.put_nowait, log=ctx.log
        )
        self.early: list[Item] = []
        """What arrived before ``room-connected``: the dispatcher handles it first, in order."""
        self.external_ip = ""

    async def open(self, rejoin: Rejoin | None = None) -> RoomState:
        """From socket to ``room-connected`` (and the two requests the official client makes
        right after). Sets ``ctx.room`` (and binds the log) as soon as the room is known."""
        ctx, envelope, signalling = self._ctx, self.envelope, self.signalling
        await signalling.connect()

        ack = await signalling.request(token_request(envelope, rejoin))
        if not ack.ok:
            with suppress(RoomError):
                await signalling.request(
                    client_conn_event("clientConnFailed", envelope=envelope, now=time.time()),
                    within=DROP_TIMEOUT_S,
                )
            raise RoomError(ack.result, f"room server {envelope.host} refused the token: {ack.msg or '?'}")
        self.external_ip = str(ack.fields.get("connectedIP", ""))
        client_id = ack.fields.get("clientId")
        if isinstance(client_id, str) and client_id:
            ctx.last_client_id = client_id  # what the server now knows us as, for a rejoin

        connected = await self._wait_room_connected()
        room = RoomState(connected)
        ctx.room = room
        ctx.last_client_id = room.client_id
        ctx.log = ctx.log.bind(room=room.room_id, client_id=room.client_id)

        max_talkers, _ = await asyncio.gather(
            signalling.request(GetMaxTalkers()),
            signalling.request(
                client_conn_event(
                    "clientConnSuccess",
                    envelope=envelope,
                    now=time.time(),
                    room_id=room.room_id,
                    client_id=room.client_id,
                    client_name=room.me.name,
                    external_ip=self.external_ip,
                )
            ),
            return_exceptions=True,
        )
        if isinstance(max_talkers, Ack) and max_talkers.ok:
            value = max_talkers.fields.get("maxTalkers")
            if isinstance(value, int) and not isinstance(value, bool):
                room.max_talkers = value
        else:
            ctx.log.warning("max_talkers_unknown", answer=repr(max_talkers))
        return room

    async def _wait_room_connected(self) -> RoomConnected:
        """``room-connected`` (10 s at most, plus the time spent in a waiting room: see
        ``waiting_room.py``); anything else before it is kept in ``early``."""
        host = self.envelope.host
        loop = asyncio.get_running_loop()
        ctx = self._ctx
        admission = Admission(
            ctx.room_info, ctx.log, ctx.fire, loop_time=loop.time(), connect_s=ROOM_CONNECTED_TIMEOUT_S
        )
        while True:
            try:
                async with asyncio.timeout_at(admission.deadline):
                    item = await self.inbox.get()
            except TimeoutError:
                if admission.waiting:
                    raise admission.timed_out() from None
                raise SignallingError(
                    f"no room-connected from {host} within {ROOM_CONNECTED_TIMEOUT_S:g} s"
                ) from None
            if isinstance(item, RoomConnected):
                return item
            if isinstance(item, SocketClosed):
                raise SignallingError(
                    f"signalling server {host} closed the connection before room-connected ({item.reason})"
                )
            if not await admission.handle(item, loop.time()):
                self.early.append(item)

    async def aclose(self, *, leave: bool = False, stream_id: int | None = None) -> None:
        """Close the socket; with ``leave``, say goodbye first (``unpublish`` of ``stream_id``,
        then ``drop``, each given a second)."""
        signalling = self.signalling
        if leave and signalling.connected:
            requests: list[Coroutine[Any, Any, Ack]] = []
            if stream_id is not None:
                requests.append(signalling.request(UnpublishRequest(stream_id=stream_id), DROP_TIMEOUT_S))
            requests.append(signalling.request(DropRequest(), DROP_TIMEOUT_S))
            for result in await asyncio.gather(*requests, return_exceptions=True):
                if isinstance(result, BaseException):
                    self._ctx.log.debug("leave_request_failed", error=str(result))
        await signalling.aclose()

    def retire(self, into: set[asyncio.Task[None]]) -> None:
        """Close the socket in the background (a dead link may hold its close for a second);
        the task stays in ``into`` until it is done."""
        closing = asyncio.create_task(self.signalling.aclose(), name=f"{self._ctx.label}-retire")
        into.add(closing)
        closing.add_done_callback(into.discard)

    async def __aenter__(self) -> RoomSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
