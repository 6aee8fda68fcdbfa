"""Socket.IO adapter: wire messages -> ``bot.proto`` events -> room model and media legs.

Engine.IO v4, WebSocket only, at ``/v3/socket.io/``; the server pings every 5 s (timeout
10 s) as the official cloud does. Handlers run one at a time per client
(``async_handlers=False``) so a client's candidates are never applied before its offer.

Every request is decoded with :func:`bot.proto.decode_client`; what does not decode is
answered ``{result: 4121, msg}`` (4101 for ``token``) and changes nothing. Events for one
participant are held back until its ``room-connected`` is out, so it never hears of a stream
or user before it knows the room, and never twice.

**Leaving and losing the network** (PROTOCOL.md sections 6 and 8). ``drop``, or a Socket.IO
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

**Bandwidth** (PROTOCOL.md section 7; payloads in :mod:`.bandwidth`). A ticker judges every
leg each ``tick_s``; a publish leg's change reaches its owner (``publisher-bw``) and the others
(``bw-alert``, ``type: "publisher"``), a subscribe leg's change its subscriber (``bw-alert``,
``type: "subscriber"``). The emulator's injection goes through the same
:meth:`Signalling._publisher_bandwidth`; an injected alert holds the detector's verdicts for
that participant until an injected restore.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import socketio  # type: ignore[import-untyped]
import structlog

from bot.proto import (
    Ack,
    BandwidthEvent,
    Candidate,
    DropRequest,
    ErrorCode,
    GetMaxTalkers,
    IceServer,
    LogClientEvent,
    MediaEngineConnecting,
    Offer,
    PublishRequest,
    Ready,
    RemoteProtocolError,
    RoomConnected,
    SelfMuteRequest,
    ServerEvent,
    SignalingMessage,
    StreamAdded,
    StreamRemoved,
    SubscribeRequest,
    TokenError,
    TokenRequest,
    UnpublishRequest,
    UnsubscribeRequest,
    UserConnected,
    UserDisconnected,
    UserMuteChanged,
    decode_client,
    encode,
    redact,
)
from bot.proto.codec import CLIENT_EVENTS
from bot.proto.events import MUTE_EVENTS

from .bandwidth import Verdict, publisher_event, stream_event
from .errors import ClientNotFound, RequestRefused, ServerError
from .media import BandwidthChange, MediaServer, PublishLeg, SubscribeLeg
from .rooms import Participant, Room, RoomRegistry, Stream
from .tokens import Claims, TokenBook

log = structlog.get_logger(__name__)

Json = dict[str, Any]
AckPayload = Json | None

SOCKETIO_PATH = "/v3/socket.io"
STATUS_PATH = "/status"  # internetDetectionUrl: the official client probes it before a rejoin
PING_INTERVAL_S = 5
PING_TIMEOUT_S = 10
HANDSHAKE_TIMEOUT_S = 10.0  # a socket that sends no valid token is closed after this
REFUSAL_GRACE_S = 0.5  # time for a refusal ack to reach the client before we close
DROP_GRACE_S = 1.0  # the SDK disconnects itself right after the drop ack
READY_TIMEOUT_S = 30.0  # the official client rejoins after 30 s without ``ready``
CLOSE_WAIT_S = 1.0  # how long aclose waits for clients to close their sockets
RECONNECT_GRACE_S = 10.0  # how long a participant whose socket dropped is kept for a rejoin
DEFAULT_RESTORE_KBPS = 1000  # an injected restore without a bandwidth nor a measurement


@dataclass(kw_only=True)
class SignallingStats:
    """Counts for the server's metrics (:mod:`.metrics` reads them at scrape time)."""

    joins: int = 0
    """Tokens accepted: joins and rejoins."""
    refusals: dict[int, int] = field(default_factory=dict)
    """Tokens refused, by error code."""
    alerts: dict[str, int] = field(default_factory=lambda: {"publisher": 0, "subscriber": 0})
    """Low-bandwidth verdicts sent, by leg (``publisher``: detector or injected)."""
    restores: int = 0
    """Restored verdicts sent."""

    def refused(self, code: int) -> None:
        self.refusals[int(code)] = self.refusals.get(int(code), 0) + 1


@dataclass(kw_only=True)
class Session:
    """One Socket.IO connection; joined once ``token`` succeeded. ``left`` once it left the
    room (``drop``) or a rejoin on a newer socket took its participant over."""

    sid: str
    remote_ip: str
    base_url: str = ""
    transport: Any = None  # the TCP transport under the WebSocket (fault injection)
    room_id: str | None = None
    client_id: str | None = None
    left: bool = False
    timers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def joined(self) -> bool:
        return self.client_id is not None and not self.left


@dataclass(kw_only=True)
class _Presence:
    """A participant's tasks, which outlive its socket: media legs, grace and stale timers."""

    leg_tasks: dict[tuple[str, int], asyncio.Task[None]] = field(default_factory=dict)
    grace: asyncio.Task[None] | None = None
    stale: asyncio.Task[None] | None = None
    away_since: float | None = None

    def tasks(self) -> list[asyncio.Task[None]]:
        timers = [t for t in (self.grace, self.stale) if t is not None]
        return [*self.leg_tasks.values(), *timers]


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
    ) -> None:
        self.rooms = rooms
        self.tokens = tokens
        self.media = media
        self.ice_servers = tuple(ice_servers)
        self.max_talkers = max_talkers
        self.reconnect_grace_s = reconnect_grace_s
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            transports=["websocket"],
            ping_interval=PING_INTERVAL_S,
            ping_timeout=PING_TIMEOUT_S,
            cors_allowed_origins="*",
            async_handlers=False,
            logger=False,
            engineio_logger=False,
        )
        self.handshake_timeout_s = HANDSHAKE_TIMEOUT_S
        self.stats = SignallingStats()
        self._sessions: dict[str, Session] = {}
        self._presence: dict[tuple[str, str], _Presence] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._handlers: dict[type, Callable[[Session, Any], Awaitable[AckPayload]]] = {
            GetMaxTalkers: self._on_get_max_talkers,
            LogClientEvent: self._on_log_client_event,
            PublishRequest: self._on_publish,
            SubscribeRequest: self._on_subscribe,
            SignalingMessage: self._on_signaling_message,
            UnpublishRequest: self._on_unpublish,
            UnsubscribeRequest: self._on_unsubscribe,
            DropRequest: self._on_drop,
            SelfMuteRequest: self._on_self_mute,
        }
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        for name in [*CLIENT_EVENTS, *MUTE_EVENTS]:
            self.sio.on(name, self._request_handler(name))
        self.sio.on("*", self._on_unknown_event)

    def attach(self, app: Any) -> None:
        self.sio.attach(app, socketio_path=SOCKETIO_PATH)

    def start(self) -> None:
        """Start the background work (the bandwidth detector's ticker)."""
        if self.media.bandwidth.enabled:
            self._spawn(self._bandwidth_loop(), name="bandwidth-detector")

    # ------------------------------------------------------------------ tasks

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """A named, referenced task whose failure is logged with its traceback."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task_failed", task=task.get_name(), exc_info=task.exception())

    @staticmethod
    def _cancel(tasks: Iterable[asyncio.Task[None] | None]) -> None:
        current = asyncio.current_task()
        for task in tasks:
            if task is not None and task is not current:
                task.cancel()

    def _presence_of(self, room: Room, participant: Participant) -> _Presence:
        key = (room.room_id, participant.client_id)
        presence = self._presence.get(key)
        if presence is None:
            presence = self._presence[key] = _Presence()
        return presence

    # ------------------------------------------------------------------ sending

    async def _emit(self, sid: str, event: ServerEvent) -> None:
        if not sid:
            return
        name, args = encode(event)
        await self.sio.emit(name, args, to=sid)

    async def _send(self, participant: Participant, event: ServerEvent) -> None:
        """To one participant, held until its room-connected is out, dropped while it is away
        (a rejoin gets a fresh room-connected)."""
        if participant.away:
            return
        if participant.announced:
            await self._emit(participant.sid, event)
        else:
            participant.pending.append(event)

    async def _broadcast(self, room: Room, event: ServerEvent, *, exclude: str) -> None:
        for other in room.others(exclude):
            await self._send(other, event)

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
        self._sessions[sid] = session
        session.timers.append(self._spawn(self._handshake_timeout(session), name=f"handshake-timeout-{sid}"))
        return True

    async def _handshake_timeout(self, session: Session) -> None:
        await asyncio.sleep(self.handshake_timeout_s)
        if session.client_id is None:
            log.info("handshake_timeout", sid=session.sid)
            await self.sio.disconnect(session.sid)

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        session = self._sessions.pop(sid, None)
        if session is None:
            return
        self._cancel(session.timers)
        if not session.joined:
            return
        deliberate = reason in (self.sio.reason.CLIENT_DISCONNECT, self.sio.reason.SERVER_DISCONNECT)
        if self._closing or deliberate or self.reconnect_grace_s <= 0:
            await self._leave(session, cause="socket_closed")
            return
        room = self.rooms.find(session.room_id or "")
        participant = None if room is None else room.participants.get(session.client_id or "")
        if room is None or participant is None or participant.sid != sid:
            return
        self._hold(room, participant, reason=str(reason))

    async def _disconnect_later(self, session: Session, delay: float) -> None:
        await asyncio.sleep(delay)
        if session.sid in self._sessions:
            await self.sio.disconnect(session.sid)

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
        session = self._sessions.get(sid)
        if session is None:  # racing a disconnect
            return Ack.error(ErrorCode.NOT_JOINED, "not connected").to_payload()
        try:
            event = decode_client(name, args)
        except RemoteProtocolError as exc:
            log.info("bad_message", sid=sid, event_name=name, reason=str(exc)[:200])
            if name == TokenRequest.WIRE:
                return self._refuse_token(session, TokenError(f"malformed token: {exc}"))
            return Ack.error(ErrorCode.MALFORMED_REQUEST, str(exc)).to_payload()
        try:
            if isinstance(event, TokenRequest):
                return await self._on_token(session, event)
            if not session.joined:
                raise RequestRefused(f"{name}: join with 'token' first", ErrorCode.NOT_JOINED)
            return await self._handlers[type(event)](session, event)
        except ServerError as exc:
            log.info("request_refused", sid=sid, event_name=name, code=exc.code, reason=str(exc))
            return Ack.error(exc.code, str(exc)).to_payload()
        except Exception:
            log.exception("request_failed", sid=sid, event_name=name)
            return Ack.error(ErrorCode.MALFORMED_REQUEST, f"{name}: server error").to_payload()

    def _member(self, session: Session) -> tuple[Room, Participant]:
        room = self.rooms.find(session.room_id or "")
        participant = None if room is None else room.participants.get(session.client_id or "")
        if room is None or participant is None or participant.sid != session.sid:
            raise RequestRefused("not in a room", ErrorCode.NOT_JOINED)
        return room, participant

    # ------------------------------------------------------------------ joining

    def _refuse_token(self, session: Session, exc: TokenError, token_id: object = None) -> Json:
        """Ack the refusal, then close the socket once the ack had time to arrive."""
        shown = redact(token_id) if isinstance(token_id, str) else None
        log.info("token_refused", sid=session.sid, code=exc.code, reason=str(exc), token=shown)
        self.stats.refused(exc.code)
        session.timers.append(
            self._spawn(self._disconnect_later(session, REFUSAL_GRACE_S), name=f"refuse-{session.sid}")
        )
        return Ack.error(exc.code, str(exc)).to_payload()

    async def _on_token(self, session: Session, request: TokenRequest) -> Json:
        if session.client_id is not None:
            raise RequestRefused("already joined on this socket", ErrorCode.ALREADY_JOINED)
        token_id = request.envelope.get("tokenId")
        try:
            claims = self.tokens.verify(request)
            room = self.rooms.find(claims.room_id)
            if room is None:
                raise TokenError("the token's room does not exist", ErrorCode.ROOM_NOT_FOUND)
        except TokenError as exc:
            return self._refuse_token(session, exc, token_id)

        if request.is_reconnecting and request.old_client_id:
            old = room.participants.get(request.old_client_id)
            if old is not None and old.jti == claims.jti:
                return await self._rejoin(session, room, old, claims, request)

        client_id = uuid.uuid4().hex
        participant = Participant(
            client_id=client_id,
            sid=session.sid,
            name=claims.name,
            role=claims.role,
            user_ref=claims.user_ref,
            data=dict(claims.data),
            jti=claims.jti,
        )
        room.add_participant(participant)
        self.tokens.consume(claims, client_id)
        self.stats.joins += 1
        session.room_id, session.client_id = room.room_id, client_id
        self._cancel(session.timers)
        session.timers.clear()
        # What the joiner sees is fixed now; anything later reaches it through ``pending``.
        snapshot = self._snapshot(room, participant, session)
        log.info(
            "participant_joined",
            room=room.room_id,
            client_id=client_id,
            name=participant.name,
            role=participant.role,
            rejoin=request.is_reconnecting,
        )
        await self._broadcast(room, UserConnected(user=participant.user_info()), exclude=client_id)
        self._spawn(self._announce(participant, snapshot), name=f"room-connected-{client_id}")
        return Ack(fields={"clientId": client_id, "connectedIP": session.remote_ip}).to_payload()

    def _snapshot(self, room: Room, participant: Participant, session: Session) -> RoomConnected:
        stale: set[int] = set().union(*(p.stale_streams for p in room.participants.values()))
        return RoomConnected(
            room_id=room.room_id,
            client_id=participant.client_id,
            user=participant.user_info(),
            user_list=[p.user_info() for p in room.participants.values()],
            streams=[
                s.info()
                for s in room.ready_streams(exclude_client=participant.client_id)
                if s.id not in stale
            ],
            ice_servers=list(self.ice_servers),
            room=room.to_meta(),
            initial_num_ats=room.initial_num_ats(self.max_talkers),
            max_talkers=self.max_talkers,
            internet_detection_url=session.base_url + STATUS_PATH if session.base_url else None,
        )

    async def _announce(self, participant: Participant, snapshot: RoomConnected) -> None:
        """room-connected after the token ack, then whatever happened meanwhile."""
        # python-socketio queues the ack once the handler has returned; this task only runs
        # after that, and one more turn of the loop leaves a margin.
        await asyncio.sleep(0)
        sid = participant.sid
        await self._emit(sid, snapshot)
        while participant.pending and participant.sid == sid:
            await self._emit(sid, participant.pending.pop(0))
        if participant.sid == sid:
            participant.announced = True

    async def _rejoin(
        self, session: Session, room: Room, participant: Participant, claims: Claims, request: TokenRequest
    ) -> Json:
        """Restore a participant on a new socket: same clientId, nothing for the others to see
        yet; its old streams become stale (removed when it publishes again)."""
        presence = self._presence_of(room, participant)
        self._cancel([presence.grace])
        presence.grace = None
        away_s = None if presence.away_since is None else time.monotonic() - presence.away_since
        presence.away_since = None
        if participant.sid:  # its old socket still looks alive: this one takes over
            old = self._sessions.get(participant.sid)
            if old is not None:
                old.left = True
                self._cancel(old.timers)
                self._spawn(self._disconnect_later(old, 0), name=f"replaced-{old.sid}")
        # the old socket's subscriptions went with its peer connections; it subscribes again
        subscriptions = [k for k in presence.leg_tasks if k[0] == "subscribe"]
        self._cancel(presence.leg_tasks.pop(k) for k in subscriptions)
        await self.media.close_subscriptions(room.room_id, participant.client_id)
        participant.subscriptions.clear()
        participant.stale_streams |= {
            s.id for s in room.streams.values() if s.client_id == participant.client_id
        }
        participant.bw_low.clear()  # verdicts were about the old connection
        participant.bw_forced = False
        participant.sid = session.sid
        participant.announced = False
        participant.pending.clear()
        if participant.stale_streams:
            self._cancel([presence.stale])
            presence.stale = self._spawn(
                self._stale_expiry(room, participant), name=f"stale-{participant.client_id}"
            )
        self.tokens.consume(claims, participant.client_id)
        self.stats.joins += 1
        session.room_id, session.client_id = room.room_id, participant.client_id
        self._cancel(session.timers)
        session.timers.clear()
        snapshot = self._snapshot(room, participant, session)
        log.info(
            "participant_rejoined",
            room=room.room_id,
            client_id=participant.client_id,
            name=participant.name,
            attempt=request.reconnect_attempt,
            away_s=None if away_s is None else round(away_s, 3),
            stale_streams=sorted(participant.stale_streams),
        )
        self._spawn(self._announce(participant, snapshot), name=f"room-connected-{participant.client_id}")
        return Ack(fields={"clientId": participant.client_id, "connectedIP": session.remote_ip}).to_payload()

    # ------------------------------------------------------------------ away, stale, leaving

    def _hold(self, room: Room, participant: Participant, *, reason: str) -> None:
        """The socket dropped without ``drop``: keep the participant for the grace period."""
        presence = self._presence_of(room, participant)
        participant.sid = ""
        participant.announced = False
        participant.pending.clear()
        presence.away_since = time.monotonic()
        self._cancel([presence.grace])
        presence.grace = self._spawn(
            self._grace_expiry(room, participant), name=f"grace-{participant.client_id}"
        )
        log.info(
            "participant_away",
            room=room.room_id,
            client_id=participant.client_id,
            reason=reason,
            grace_s=self.reconnect_grace_s,
        )

    async def _grace_expiry(self, room: Room, participant: Participant) -> None:
        await asyncio.sleep(self.reconnect_grace_s)
        if participant.away and room.participants.get(participant.client_id) is participant:
            await self._depart(room, participant, cause="grace_expired")

    async def _stale_expiry(self, room: Room, participant: Participant) -> None:
        """A rejoined participant that does not publish again loses its old streams anyway."""
        await asyncio.sleep(self.reconnect_grace_s)
        if room.participants.get(participant.client_id) is participant:
            await self._remove_stale(room, participant, cause="stale")

    async def _remove_stale(self, room: Room, participant: Participant, *, cause: str) -> None:
        presence = self._presence_of(room, participant)
        self._cancel([presence.stale])
        presence.stale = None
        for stream_id in sorted(participant.stale_streams):
            stream = room.streams.get(stream_id)
            if stream is not None:
                await self._remove_stream(room, stream, cause=cause, retire=True)
        participant.stale_streams.clear()

    async def _leave(self, session: Session, *, cause: str) -> None:
        """The participant of this socket leaves (idempotent; nothing if a newer socket has
        taken it over)."""
        if not session.joined:
            return
        session.left = True
        room = self.rooms.find(session.room_id or "")
        participant = None if room is None else room.participants.get(session.client_id or "")
        if room is None or participant is None or participant.sid != session.sid:
            return
        await self._depart(room, participant, cause=cause)

    async def _depart(self, room: Room, participant: Participant, *, cause: str) -> None:
        """Remove everything the participant owned; others hear onRemoveStream per stream,
        then user-disconnected. Idempotent."""
        departure = room.remove_participant(participant.client_id)
        if departure is None:
            return
        presence = self._presence.pop((room.room_id, participant.client_id), None)
        if presence is not None:
            self._cancel(presence.tasks())
        who = departure.participant
        for stream in departure.streams:
            if stream.announced:
                await self._broadcast(room, StreamRemoved(stream_id=stream.id), exclude=who.client_id)
        info = who.user_info()
        await self._broadcast(
            room,
            UserDisconnected(
                client_id=who.client_id, name=who.name, role=who.role, permissions=info.permissions
            ),
            exclude=who.client_id,
        )
        await self.media.close_client(room.room_id, who.client_id, [s.id for s in departure.streams])
        log.info("participant_left", room=room.room_id, client_id=who.client_id, cause=cause)

    async def close_room(self, room: Room) -> None:
        """Disconnect everyone in a room being deleted."""
        for participant in list(room.participants.values()):
            sid = participant.sid
            session = self._sessions.get(sid) if sid else None
            if session is not None:
                session.left = True
            await self._depart(room, participant, cause="room_deleted")
            if session is not None:
                await self.sio.disconnect(sid)

    async def aclose(self) -> None:
        """Disconnect every socket and stop every task (idempotent)."""
        self._closing = True
        for sid in list(self._sessions):
            with contextlib.suppress(Exception):
                await self.sio.disconnect(sid)
        # Let the clients answer the disconnect: a WebSocket still open when the web server
        # stops holds its shutdown until the next ping.
        for _ in range(int(CLOSE_WAIT_S / 0.02)):
            if not self.sio.eio.sockets:
                break
            await asyncio.sleep(0.02)
        for session in list(self._sessions.values()):
            await self._leave(session, cause="server_closing")
        for room in self.rooms:  # the away ones have no socket
            for participant in list(room.participants.values()):
                await self._depart(room, participant, cause="server_closing")
        self._sessions.clear()
        tasks = list(self._tasks)
        self._cancel(tasks)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.sio.shutdown()

    # ------------------------------------------------------------------ fault injection

    async def drop_connection(self, room_id: str, client_id: str) -> None:
        """Cut a participant's socket as a network fault would: the TCP connection is aborted,
        no Socket.IO nor Engine.IO close goes out. ClientNotFound if it has no socket."""
        room = self.rooms.get(room_id)
        participant = room.participants.get(client_id)
        session = None if participant is None or participant.away else self._sessions.get(participant.sid)
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

    # ------------------------------------------------------------------ bandwidth

    async def _bandwidth_loop(self) -> None:
        tick = self.media.bandwidth.tick_s
        while True:
            await asyncio.sleep(tick)
            for change in self.media.bandwidth_tick(time.monotonic()):
                try:
                    await self._on_bandwidth_change(change)
                except Exception:
                    log.exception("bandwidth_event_failed", room=change.room_id, stream_id=change.stream_id)

    async def _on_bandwidth_change(self, change: BandwidthChange) -> None:
        room = self.rooms.find(change.room_id)
        stream = None if room is None else room.streams.get(change.stream_id)
        if room is None or stream is None:
            return
        window = None if change.stats is None else change.stats.to_json()
        if change.subscriber is not None:
            subscriber = room.participants.get(change.subscriber)
            if subscriber is None:
                return
            event = BandwidthEvent(**stream_event(stream.id, stream.name, change.verdict, "subscriber"))
            await self._send(subscriber, event)
            self._count_verdict(change.verdict, "subscriber")
            log.info(
                "bandwidth_" + change.verdict,
                room=room.room_id,
                client_id=subscriber.client_id,
                stream_id=stream.id,
                leg="subscribe",
                reasons=list(change.reasons),
                window=window,
            )
            return
        owner = room.participants.get(stream.client_id)
        if owner is None or owner.away or stream.id in owner.stale_streams:
            return
        if owner.bw_forced:
            log.debug(
                "bandwidth_verdict_held", room=room.room_id, stream_id=stream.id, verdict=change.verdict
            )
            return
        kbps = 0.0
        if change.stats is not None:  # an alert: what the link carries now; a restore: the window
            recent = change.stats.recent_kbps
            kbps = recent if change.verdict == "low" and recent is not None else change.stats.kbps
        await self._publisher_bandwidth(
            room,
            owner,
            [stream],
            change.verdict,
            kbps,
            source="detector",
            reasons=change.reasons,
            window=window,
        )

    async def _publisher_bandwidth(
        self,
        room: Room,
        participant: Participant,
        streams: Sequence[Stream],
        verdict: Verdict,
        kbps: float,
        *,
        source: str,
        reasons: Sequence[str] = (),
        window: Json | None = None,
    ) -> None:
        """A participant's uplink is low / restored: ``publisher-bw`` to it (when its state
        changes, or always when injected), ``bw-alert`` per announced stream to the others."""
        self._count_verdict(verdict, "publisher")
        was_low = bool(participant.bw_low)
        for stream in streams:
            if verdict == "low":
                participant.bw_low.add(stream.id)
            else:
                participant.bw_low.discard(stream.id)
        if source == "injected" or was_low != bool(participant.bw_low):
            payload = publisher_event(kbps, restored=verdict == "restored")
            await self._send(participant, BandwidthEvent(**payload))
        for stream in streams:
            if stream.announced:
                event = BandwidthEvent(**stream_event(stream.id, stream.name, verdict, "publisher"))
                await self._broadcast(room, event, exclude=participant.client_id)
        log.info(
            "bandwidth_" + verdict,
            room=room.room_id,
            client_id=participant.client_id,
            stream_ids=[s.id for s in streams],
            leg="publish",
            kbps=round(kbps),
            source=source,
            reasons=list(reasons),
            window=window,
        )

    def _count_verdict(self, verdict: Verdict, kind: str) -> None:
        if verdict == "low":
            self.stats.alerts[kind] = self.stats.alerts.get(kind, 0) + 1
        else:
            self.stats.restores += 1

    async def inject_bandwidth(
        self, room_id: str, client_ids: Sequence[str], *, kbps: float | None, restored: bool
    ) -> None:
        """The emulator's bandwidth injection: exactly the detector's events for these clients.
        An alert holds the detector's own verdicts for them until an injected restore."""
        room = self.rooms.get(room_id)
        targets = []
        for client_id in client_ids:
            participant = room.participants.get(client_id)
            if participant is None:
                raise ClientNotFound(f"no client {client_id!r} in room {room_id!r}")
            targets.append(participant)
        for participant in targets:
            streams = [
                s
                for s in room.streams.values()
                if s.client_id == participant.client_id and s.id not in participant.stale_streams
            ]
            if restored:
                participant.bw_forced = False
                value = kbps if kbps is not None else self._measured_kbps(room, streams)
                await self._publisher_bandwidth(
                    room, participant, streams, "restored", value, source="injected"
                )
                self.media.reset_detectors(room.room_id, [s.id for s in streams])
            else:
                participant.bw_forced = True
                await self._publisher_bandwidth(
                    room, participant, streams, "low", kbps or 1, source="injected"
                )

    def _measured_kbps(self, room: Room, streams: Sequence[Stream]) -> float:
        total = 0.0
        for stream in streams:
            leg = self.media.publish_leg(room.room_id, stream.id)
            last = None if leg is None else leg.monitor.detector.last
            total += 0.0 if last is None else last.kbps
        return total or DEFAULT_RESTORE_KBPS

    # ------------------------------------------------------------------ small requests

    async def _on_get_max_talkers(self, session: Session, event: GetMaxTalkers) -> Json:
        return Ack(fields={"maxTalkers": self.max_talkers}).to_payload()

    async def _on_log_client_event(self, session: Session, event: LogClientEvent) -> Json:
        log.debug("client_event", client_id=session.client_id, event_type=event.event_type)
        return Ack().to_payload()

    async def _on_self_mute(self, session: Session, event: SelfMuteRequest) -> Json:
        room, participant = self._member(session)
        if event.kind == "audio":
            participant.audio_muted = event.muted
        else:
            participant.video_muted = event.muted
        log.info(
            "participant_muted",
            room=room.room_id,
            client_id=participant.client_id,
            kind=event.kind,
            muted=event.muted,
        )
        relay = UserMuteChanged(
            kind=event.kind,
            muted=event.muted,
            client_id=participant.client_id,
            user=participant.user_info(),
        )
        await self._broadcast(room, relay, exclude=participant.client_id)
        return Ack().to_payload()

    async def _on_drop(self, session: Session, event: DropRequest) -> Json:
        self._spawn(self._drop(session), name=f"drop-{session.sid}")
        return Ack().to_payload()

    async def _drop(self, session: Session) -> None:
        await asyncio.sleep(0)  # after the ack
        await self._leave(session, cause="drop")
        await self._disconnect_later(session, DROP_GRACE_S)

    # ------------------------------------------------------------------ publishing

    async def _on_publish(self, session: Session, event: PublishRequest) -> Json:
        room, participant = self._member(session)
        if not participant.can_publish:
            raise RequestRefused(f"role '{participant.role}' may not publish", ErrorCode.NOT_PERMITTED)
        if not (event.audio or event.video):
            raise RequestRefused("publish: neither audio nor video", ErrorCode.INVALID_PARAMETERS)
        if participant.stale_streams:  # the rejoined client's new stream replaces the old ones
            await self._remove_stale(room, participant, cause="republished")
        stream = room.add_stream(
            participant,
            audio=event.audio,
            video=event.video,
            data=event.data,
            screen=bool(event.screen),
            name=event.name or participant.name,
        )
        self.rooms.save_stream_ids(room)
        log.info(
            "stream_published",
            room=room.room_id,
            client_id=participant.client_id,
            stream_id=stream.id,
            audio=stream.audio,
            video=stream.video,
        )
        return Ack(fields={"id": stream.id}).to_payload()

    async def _on_unpublish(self, session: Session, event: UnpublishRequest) -> Json:
        room, participant = self._member(session)
        stream = room.owned_stream(participant.client_id, event.stream_id)
        if stream is None:
            if room.take_retired(participant.client_id, event.stream_id):
                # the server removed it already (its peer connection closed first: the
                # official client's leave order); that was the unpublish
                log.info("stream_unpublish_acknowledged", room=room.room_id, stream_id=event.stream_id)
                return Ack().to_payload()
            raise RequestRefused(
                f"unpublish: stream {event.stream_id} is not yours", ErrorCode.STREAM_NOT_FOUND
            )
        await self._remove_stream(room, stream, cause="unpublish")
        return Ack().to_payload()

    async def _remove_stream(self, room: Room, stream: Stream, *, cause: str, retire: bool = False) -> None:
        room.remove_stream(stream.id, retire=retire)
        presence = self._presence.get((room.room_id, stream.client_id))
        if presence is not None:
            self._cancel([presence.leg_tasks.pop(("publish", stream.id), None)])
        if stream.announced:
            await self._broadcast(room, StreamRemoved(stream_id=stream.id), exclude=stream.client_id)
        await self.media.close_publish(room.room_id, stream.id)
        log.info("stream_unpublished", room=room.room_id, stream_id=stream.id, cause=cause)

    # ------------------------------------------------------------------ subscribing

    async def _on_subscribe(self, session: Session, event: SubscribeRequest) -> Json:
        room, participant = self._member(session)
        stream = room.streams.get(event.stream_id)
        if stream is None or not stream.announced:
            raise RequestRefused(f"subscribe: no stream {event.stream_id}", ErrorCode.STREAM_NOT_FOUND)
        if stream.client_id == participant.client_id:
            raise RequestRefused("subscribe: that stream is your own", ErrorCode.INVALID_PARAMETERS)
        participant.subscriptions.add(stream.id)
        return Ack().to_payload()

    async def _on_unsubscribe(self, session: Session, event: UnsubscribeRequest) -> Json:
        room, participant = self._member(session)
        if event.stream_id not in participant.subscriptions:
            raise RequestRefused(
                f"unsubscribe: not subscribed to {event.stream_id}", ErrorCode.STREAM_NOT_FOUND
            )
        participant.subscriptions.discard(event.stream_id)
        presence = self._presence_of(room, participant)
        self._cancel([presence.leg_tasks.pop(("subscribe", event.stream_id), None)])
        await self.media.close_subscribe(room.room_id, participant.client_id, event.stream_id)
        return Ack().to_payload()

    # ------------------------------------------------------------------ media legs

    async def _on_signaling_message(self, session: Session, event: SignalingMessage) -> None:
        room, participant = self._member(session)
        stream_id = event.stream_id
        own = room.owned_stream(participant.client_id, stream_id) is not None
        if not own and stream_id not in participant.subscriptions:
            raise RequestRefused(
                f"signaling_message: stream {stream_id} is neither yours nor subscribed",
                ErrorCode.STREAM_NOT_FOUND,
            )
        msg = event.msg
        role = "publish" if own else "subscribe"
        if isinstance(msg, Offer):
            presence = self._presence_of(room, participant)
            self._cancel([presence.leg_tasks.pop((role, stream_id), None)])
            if own:
                publish = await self.media.open_publish(room.room_id, stream_id, msg.sdp)
                coro = self._run_publish_leg(session.sid, room, publish)
            else:
                subscribe = await self.media.open_subscribe(
                    room.room_id, participant.client_id, stream_id, msg.sdp
                )
                coro = self._run_subscribe_leg(session.sid, room, subscribe)
            presence.leg_tasks[(role, stream_id)] = self._spawn(
                coro, name=f"{role}-leg-{room.room_id}-{stream_id}-{participant.client_id}"
            )
        elif isinstance(msg, Candidate):
            leg: PublishLeg | SubscribeLeg | None = (
                self.media.publish_leg(room.room_id, stream_id)
                if own
                else self.media.subscribe_leg(room.room_id, participant.client_id, stream_id)
            )
            if leg is None:
                raise RequestRefused(
                    f"signaling_message: no offer yet for stream {stream_id}",
                    ErrorCode.STREAM_NOT_FOUND,
                )
            await leg.add_candidate(msg)
        # the end-of-candidates marker and other msg types need nothing; the ack is empty
        return None

    async def _run_publish_leg(self, sid: str, room: Room, leg: PublishLeg) -> None:
        """Answer, wait for the media, then ``ready`` to the publisher and onAddStream to others."""
        stream_id = leg.stream_id
        answer = await leg.answer()
        await self._emit(sid, MediaEngineConnecting(stream_id=stream_id, msg=answer))
        connected = await _connected_in_time(leg)
        stream = room.streams.get(stream_id)
        if stream is None or self.media.publish_leg(room.room_id, stream_id) is not leg:
            return
        if not connected:
            await self._publish_leg_ended(room, stream, leg)
            return
        first = not stream.announced
        stream.state = "ready"
        await self._emit(sid, MediaEngineConnecting(stream_id=stream_id, msg=Ready()))
        if first:
            await self._broadcast(room, StreamAdded(stream=stream.info()), exclude=stream.client_id)
        log.info("stream_ready", room=room.room_id, stream_id=stream_id)
        await leg.wait_ended()
        if not leg.closed_by_server and room.streams.get(stream_id) is stream:
            await self._publish_leg_ended(room, stream, leg)

    async def _publish_leg_ended(self, room: Room, stream: Stream, leg: PublishLeg) -> None:
        """The publisher's peer connection ended (or never came up) without the server closing it."""
        owner = room.participants.get(stream.client_id)
        if owner is None:
            return
        if owner.away or stream.id in owner.stale_streams:
            # tell nobody yet: the grace period, the re-publish or its expiry decides
            log.info(
                "publish_leg_ended",
                room=room.room_id,
                stream_id=stream.id,
                reason=leg.end_reason,
                owner_away=owner.away,
            )
            await self.media.close_publish(room.room_id, stream.id, leg)
            return
        if leg.end_reason == "peer_closed":
            await self._remove_stream(room, stream, cause="peer_closed", retire=True)
            return
        log.warning(
            "media_leg_failed", room=room.room_id, stream_id=stream.id, role="publish", reason=leg.end_reason
        )
        await self._remove_stream(room, stream, cause="media_failed", retire=True)

    async def _run_subscribe_leg(self, sid: str, room: Room, leg: SubscribeLeg) -> None:
        """Answer and ``ready`` keyed ``peerId`` (PROTOCOL.md section 5)."""
        stream_id = leg.stream_id
        answer = await leg.answer()
        await self._emit(sid, MediaEngineConnecting(stream_id=stream_id, msg=answer, subscriber=True))
        if not await _connected_in_time(leg):
            if leg.end_reason != "peer_closed" and not leg.closed_by_server:
                log.warning(
                    "media_leg_failed",
                    room=room.room_id,
                    stream_id=stream_id,
                    role="subscribe",
                    reason=leg.end_reason,
                )
            await self.media.close_subscribe(room.room_id, leg.client_id, stream_id, leg)
            return
        await self._emit(sid, MediaEngineConnecting(stream_id=stream_id, msg=Ready(), subscriber=True))
        log.info("subscription_ready", room=room.room_id, stream_id=stream_id, client_id=leg.client_id)
        await leg.wait_ended()
        await self.media.close_subscribe(room.room_id, leg.client_id, stream_id, leg)


async def _connected_in_time(leg: PublishLeg | SubscribeLeg) -> bool:
    """Whether the leg's media came up before the official client would give up."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(READY_TIMEOUT_S):
            return await leg.wait_connected()
    return False
