"""Socket.IO adapter: wire messages -> ``bot.proto`` events -> room model and media legs.

Engine.IO v4, WebSocket only, at ``/v3/socket.io/``; the server pings every 5 s (timeout
10 s) as the official cloud does. Handlers run one at a time per client
(``async_handlers=False``) so a client's candidates are never applied before its offer.

Every request is decoded with :func:`bot.proto.decode_client`; what does not decode is
answered ``{result: 4121, msg}`` (4101 for ``token``) and changes nothing. Events for one
participant are held back until its ``room-connected`` is out, so it never hears of a stream
or user before it knows the room, and never twice.

**Leaving and losing the network** (PROTOCOL.md sections 6 and 8). ``drop`` (``{self: true}``
or nothing: a moderator's ``drop {all, clientIds}`` drops others, see :mod:`.moderation`), or a Socket.IO
disconnect the client sent itself, removes the participant at once: others hear
``onRemoveStream`` per stream, then ``user-disconnected``. A socket that closes any other way
(transport closed or broken, ping timeout: a network fault) leaves the participant *away*
for ``reconnect_grace_s``: nobody is told, its streams stay listed, events for it are dropped.
A ``token`` with ``isReconnecting`` and ``oldClientIdForReconnect`` naming it, with the same
token, restores it within that time: **same clientId**, no ``user-disconnected`` /
``user-connected`` for the others, a fresh ``room-connected`` for it. Its old streams become
*stale*: the client re-publishes with a new stream id and never unpublishes the old one, so
they are removed (``onRemoveStream`` to the others) when it publishes again, or
``reconnect_grace_s`` after the rejoin if it does not. When the grace period ends first, it
is removed as if it had left. A rejoin the server cannot match (after the grace period, or
after a restart with the same data directory) is a fresh join with a new clientId.

**A peer's orderly close is not a failure.** The official client closes its peer connections,
then sends ``unpublish``, then ``drop``. A publish leg that the peer closed (DTLS
``close_notify``) removes its stream as a normal unpublish (``cause=peer_closed``); a failed
one (ICE lost) as ``media_failed``. Either way the owner's late ``unpublish`` of that stream
is acknowledged ``{result: 0}`` (once).

**Bandwidth** (PROTOCOL.md section 7): see :mod:`.bandwidth_events`.

This module is the Socket.IO adapter only (connect, disconnect, the dispatch table, faults);
the work is done by one collaborator per concern, sharing the rooms, the media server, the
:class:`~.outbox.Outbox` and the :class:`~.tasks.Tasks`:

- :mod:`.join`: the ``token`` handshake, rejoin matching, ``room-connected``;
- :mod:`.presence`: sessions, away and grace, stale streams, leaving (the participant phases);
- :mod:`.requests`: publish, subscribe, mutes, drop, ``signaling_message`` and the media legs;
- :mod:`.bandwidth_events`: the detector's loop, the injection, verdicts as events;
- :mod:`.data_relay`: chat and custom data (``sendDataStreamToRoom``).
- :mod:`.moderation`: a moderator's drop of others, hard mutes, recording notices.
- :mod:`.talkers.service`: the active-talker lists and the talker requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import socketio  # type: ignore[import-untyped]
import structlog

from bot.proto import (
    CLIENT_EVENTS,
    MUTE_EVENTS,
    Ack,
    ErrorCode,
    IceServer,
    RemoteProtocolError,
    TokenError,
    TokenRequest,
    decode_client,
)

from .bandwidth_events import BandwidthEvents
from .data_relay import MAX_SOCKET_MESSAGE_BYTES, DataRelay
from .errors import ClientNotFound, RequestRefused, ServerError
from .floor import Floor
from .join import Joining
from .media import MediaServer
from .moderation import Moderation
from .outbox import Outbox
from .presence import RECONNECT_GRACE_S, Presences, Session
from .requests import AckPayload, Requests
from .room_clock import MINUTE_S, RoomClocks
from .rooms import Room, RoomRegistry
from .stats import Failures, SignallingStats
from .talkers.service import ActiveTalkers
from .tasks import Tasks
from .tokens import TokenBook
from .waiting_room import WaitingRoom

__all__ = ["RECONNECT_GRACE_S", "SOCKETIO_PATH", "Signalling"]

log = structlog.get_logger(__name__)

SOCKETIO_PATH = "/v3/socket.io"
PING_INTERVAL_S = 5
PING_TIMEOUT_S = 10
HANDSHAKE_TIMEOUT_S = 10.0  # a socket that sends no valid token is closed after this
CLOSE_WAIT_S = 1.0  # how long aclose waits for clients to close their sockets


class Signalling:
    """The Socket.IO side of one room server."""

    def __init__(
        self,
        *,
        rooms: RoomRegistry,
        tokens: TokenBook,
        media: MediaServer,
        ice_servers: Iterable[IceServer] = (),
        max_talkers: int = 6,
        reconnect_grace_s: float = RECONNECT_GRACE_S,
        failures: Failures | None = None,
        minute_s: float = MINUTE_S,
    ) -> None:
        self.rooms = rooms
        self.tokens = tokens
        self.media = media
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            transports=["websocket"],
            ping_interval=PING_INTERVAL_S,
            ping_timeout=PING_TIMEOUT_S,
            cors_allowed_origins="*",
            async_handlers=False,
            max_http_buffer_size=MAX_SOCKET_MESSAGE_BYTES,
            # Our own loggers: given True/False, python-socketio and python-engineio attach a
            # StreamHandler of their own that prints tracebacks for a client's garbage to stderr.
            logger=logging.getLogger("socketio.server"),
            engineio_logger=logging.getLogger("engineio.server"),
        )
        self.handshake_timeout_s = HANDSHAKE_TIMEOUT_S
        self.stats = SignallingStats()
        self.failures = failures if failures is not None else Failures()
        self.tasks = Tasks(self.failures)
        self.outbox = Outbox(self.sio)
        self.presences = Presences(
            rooms=rooms,
            media=media,
            outbox=self.outbox,
            tasks=self.tasks,
            reconnect_grace_s=reconnect_grace_s,
        )
        self.joining = Joining(
            rooms=rooms,
            tokens=tokens,
            presences=self.presences,
            outbox=self.outbox,
            tasks=self.tasks,
            stats=self.stats,
            ice_servers=ice_servers,
            max_talkers=max_talkers,
        )
        self.requests = Requests(
            rooms=rooms,
            media=media,
            presences=self.presences,
            outbox=self.outbox,
            tasks=self.tasks,
            max_talkers=max_talkers,
        )
        self.bandwidth_events = BandwidthEvents(
            rooms=rooms, media=media, outbox=self.outbox, tasks=self.tasks, stats=self.stats
        )
        self._room_control(minute_s)
        self.talkers = ActiveTalkers(
            rooms=rooms,
            media=media,
            presences=self.presences,
            outbox=self.outbox,
            tasks=self.tasks,
            max_talkers=max_talkers,
        )
        self._closing = False
        self.data_relay = DataRelay(presences=self.presences, outbox=self.outbox, stats=self.stats)
        self._handlers = {
            **self.requests.handlers(),
            **self.talkers.handlers(),
            **self.data_relay.handlers(),
            **self.waiting_room.handlers(),
            **self.floor.handlers(),
        }
        self.moderation = Moderation(
            rooms=rooms,
            presences=self.presences,
            outbox=self.outbox,
            tasks=self.tasks,
            requests=self._handlers,
        )
        self._handlers = {**self._handlers, **self.moderation.handlers()}
        self.joining.on_admitted.append(self.moderation.admitted)
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        for name in [*CLIENT_EVENTS, *MUTE_EVENTS]:
            self.sio.on(name, self._request_handler(name))
        self.sio.on("*", self._on_unknown_event)

    def _room_control(self, minute_s: float) -> None:
        """The waiting room, lecture mode's floor and the room clock, hooked into joining."""
        self.waiting_room = WaitingRoom(presences=self.presences, outbox=self.outbox, tasks=self.tasks)
        self.floor = Floor(presences=self.presences, outbox=self.outbox)
        self.room_clocks = RoomClocks(
            rooms=self.rooms,
            presences=self.presences,
            outbox=self.outbox,
            tasks=self.tasks,
            waiting_room=self.waiting_room,
            minute_s=minute_s,
        )
        self.waiting_room.enter = self.joining.enter
        self.joining.waiting_room = self.waiting_room
        self.joining.entered += [self.waiting_room.entered, self.room_clocks.entered]
        self.joining.snapshot_extras += [self.waiting_room.awaited_list, self.floor.hands]
        self.requests.publish_gate = self.floor.check_publish

    @property
    def reconnect_grace_s(self) -> float:
        return self.presences.reconnect_grace_s

    def attach(self, app: Any) -> None:
        self.sio.attach(app, socketio_path=SOCKETIO_PATH)

    def start(self) -> None:
        """Start the background work (the bandwidth detector's and the talkers' tickers)."""
        self.bandwidth_events.start()
        self.talkers.start()

    # ------------------------------------------------------------------ connection

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        if self._closing:
            return False  # python-socketio refuses the connection
        request = environ.get("aiohttp.request")
        remote = getattr(request, "remote", None) or environ.get("REMOTE_ADDR", "")
        base_url = ""
        if request is not None:
            base_url = f"{'https' if request.secure else 'http'}://{request.host}"
        session = Session(
            sid=sid,
            remote_ip=str(remote),
            base_url=base_url,
            transport=getattr(request, "transport", None),
        )
        self.presences.sessions[sid] = session
        session.timers.append(
            self.tasks.spawn(self._handshake_timeout(session), name=f"handshake-timeout-{sid}")
        )
        return True

    async def _handshake_timeout(self, session: Session) -> None:
        await asyncio.sleep(self.handshake_timeout_s)
        if session.client_id is None:
            log.info("handshake_timeout", sid=session.sid)
            await self.sio.disconnect(session.sid)

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        session = self.presences.sessions.pop(sid, None)
        if session is None:
            return
        self.tasks.cancel(session.timers)
        self.waiting_room.forget(sid)
        if not session.joined:
            return
        deliberate = reason in (self.sio.reason.CLIENT_DISCONNECT, self.sio.reason.SERVER_DISCONNECT)
        if self._closing or deliberate or self.reconnect_grace_s <= 0:
            await self.presences.leave(session, cause="socket_closed")
            return
        seat = self.presences.seat(session)
        if seat is not None:
            self.presences.hold(*seat, reason=str(reason))

    # ------------------------------------------------------------------ dispatch

    def _request_handler(self, name: str) -> Callable[..., Awaitable[AckPayload]]:
        async def handler(sid: str, *args: Any) -> AckPayload:
            return await self._dispatch(name, sid, args)

        handler.__name__ = f"on_{name.replace('-', '_')}"
        return handler

    async def _on_unknown_event(self, event: Any, sid: str, *args: Any) -> AckPayload:
        log.info("bad_message", sid=sid, event_name=str(event)[:64], reason="unknown event")
        return Ack.error(ErrorCode.MALFORMED_REQUEST, f"unknown event {str(event)[:64]!r}").to_payload()

    async def _dispatch(self, name: str, sid: str, args: tuple[Any, ...]) -> AckPayload:
        session = self.presences.sessions.get(sid)
        if session is None:  # racing a disconnect
            return Ack.error(ErrorCode.NOT_JOINED, "not connected").to_payload()
        try:
            event = decode_client(name, args)
        except RemoteProtocolError as exc:
            log.info("bad_message", sid=sid, event_name=name, reason=str(exc)[:200])
            if name == TokenRequest.WIRE:
                return self.joining.refuse(session, TokenError(f"malformed token: {exc}"))
            return Ack.error(ErrorCode.MALFORMED_REQUEST, str(exc)).to_payload()
        try:
            if isinstance(event, TokenRequest):
                return await self.joining.on_token(session, event)
            if not session.joined:
                raise RequestRefused(f"{name}: join with 'token' first", ErrorCode.NOT_JOINED)
            return await self._handlers[type(event)](session, event)
        except ServerError as exc:
            log.info("request_refused", sid=sid, event_name=name, code=exc.code, reason=str(exc))
            return Ack.error(exc.code, str(exc)).to_payload()
        except Exception as exc:
            log.exception("request_failed", sid=sid, event_name=name)
            self.failures.record("signalling_handler", exc)
            return Ack.error(ErrorCode.MALFORMED_REQUEST, f"{name}: server error").to_payload()

    # ------------------------------------------------------------------ lifecycle

    async def close_room(self, room: Room) -> None:
        """Disconnect everyone in a room being deleted (those waiting to be let in too)."""
        await self.waiting_room.close_room(room)
        await self.presences.close_room(room)
        self.moderation.forget(room.room_id)

    async def aclose(self) -> None:
        """Disconnect every socket and stop every task (idempotent)."""
        self._closing = True
        for sid in list(self.presences.sessions):
            with contextlib.suppress(Exception):
                await self.sio.disconnect(sid)
        # Let the clients answer the disconnect: a WebSocket still open when the web server
        # stops holds its shutdown until the next ping.
        for _ in range(int(CLOSE_WAIT_S / 0.02)):
            if not self.sio.eio.sockets:
                break
            await asyncio.sleep(0.02)
        await self.presences.depart_all(cause="server_closing")
        await self.tasks.aclose()
        await self.sio.shutdown()

    # ------------------------------------------------------------------ fault injection

    async def drop_connection(self, room_id: str, client_id: str) -> None:
        """Cut a participant's socket as a network fault would: the TCP connection is aborted,
        no Socket.IO nor Engine.IO close goes out. ClientNotFound if it has no socket."""
        room = self.rooms.get(room_id)
        participant = room.participants.get(client_id)
        session = (
            None if participant is None or participant.away else self.presences.sessions.get(participant.sid)
        )
        if participant is None or session is None:
            raise ClientNotFound(f"no connected client {client_id!r} in room {room_id!r}")
        log.info("fault_injected", fault="drop", room=room_id, client_id=client_id)
        transport = session.transport
        if transport is not None and not transport.is_closing():
            transport.abort()
            return
        eio_sid = self.sio.manager.eio_sid_from_sid(session.sid, "/")
        if eio_sid is not None:  # no transport to cut: close Engine.IO at least
            await self.sio.eio.disconnect(eio_sid)

    async def drop_participant(self, room_id: str, client_id: str) -> None:
        """The application server drops a participant (see :meth:`.Moderation.drop_by_server`)."""
        await self.moderation.drop_by_server(room_id, client_id)

    async def inject_bandwidth(
        self, room_id: str, client_ids: Sequence[str], *, kbps: float | None, restored: bool
    ) -> None:
        """The emulator's bandwidth injection (see :meth:`.BandwidthEvents.inject`)."""
        await self.bandwidth_events.inject(room_id, client_ids, kbps=kbps, restored=restored)
