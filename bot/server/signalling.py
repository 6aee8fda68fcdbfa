"""Socket.IO adapter: wire messages -> ``bot.proto`` events -> room model and media legs.

Engine.IO v4, WebSocket only, at ``/v3/socket.io/``; the server pings every 5 s (timeout
10 s) as the official cloud does. Handlers run one at a time per client
(``async_handlers=False``) so a client's candidates are never applied before its offer.

Every request is decoded with :func:`bot.proto.decode_client`; what does not decode is
answered ``{result: 4121, msg}`` (4101 for ``token``) and changes nothing. Events for one
participant are held back until its ``room-connected`` is out, so it never hears of a stream
or user before it knows the room, and never twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import socketio  # type: ignore[import-untyped]
import structlog

from bot.proto import (
    Ack,
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

from .errors import RequestRefused, ServerError
from .media import MediaServer, PublishLeg, SubscribeLeg
from .rooms import Participant, Room, RoomRegistry, Stream
from .tokens import TokenBook

log = structlog.get_logger(__name__)

Json = dict[str, Any]
AckPayload = Json | None

SOCKETIO_PATH = "/v3/socket.io"
PING_INTERVAL_S = 5
PING_TIMEOUT_S = 10
HANDSHAKE_TIMEOUT_S = 10.0  # a socket that sends no valid token is closed after this
REFUSAL_GRACE_S = 0.5  # time for a refusal ack to reach the client before we close
DROP_GRACE_S = 1.0  # the SDK disconnects itself right after the drop ack
READY_TIMEOUT_S = 30.0  # the official client rejoins after 30 s without ``ready``
CLOSE_WAIT_S = 1.0  # how long aclose waits for clients to close their sockets


@dataclass(kw_only=True)
class Session:
    """One Socket.IO connection; joined once ``token`` succeeded."""

    sid: str
    remote_ip: str
    room_id: str | None = None
    client_id: str | None = None
    left: bool = False
    timers: list[asyncio.Task[None]] = field(default_factory=list)
    leg_tasks: dict[tuple[str, int], asyncio.Task[None]] = field(default_factory=dict)

    @property
    def joined(self) -> bool:
        return self.client_id is not None and not self.left


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
    ) -> None:
        self.rooms = rooms
        self.tokens = tokens
        self.media = media
        self.ice_servers = tuple(ice_servers)
        self.max_talkers = max_talkers
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
        self._sessions: dict[str, Session] = {}
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
    def _cancel(tasks: Iterable[asyncio.Task[None]]) -> None:
        current = asyncio.current_task()
        for task in tasks:
            if task is not current:
                task.cancel()

    # ------------------------------------------------------------------ sending

    async def _emit(self, sid: str, event: ServerEvent) -> None:
        name, args = encode(event)
        await self.sio.emit(name, args, to=sid)

    async def _send(self, participant: Participant, event: ServerEvent) -> None:
        """To one participant, or held until its room-connected is out."""
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
        session = Session(sid=sid, remote_ip=str(remote))
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
        await self._leave(session, cause="socket_closed")

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
        if room is None or participant is None:
            raise RequestRefused("not in a room", ErrorCode.NOT_JOINED)
        return room, participant

    # ------------------------------------------------------------------ joining

    def _refuse_token(self, session: Session, exc: TokenError, token_id: object = None) -> Json:
        """Ack the refusal, then close the socket once the ack had time to arrive."""
        shown = redact(token_id) if isinstance(token_id, str) else None
        log.info("token_refused", sid=session.sid, code=exc.code, reason=str(exc), token=shown)
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

        if request.is_reconnecting and request.old_client_id in room.participants:
            await self._replace(room.participants[request.old_client_id])

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
        session.room_id, session.client_id = room.room_id, client_id
        self._cancel(session.timers)
        session.timers.clear()
        # What the joiner sees is fixed now; anything later reaches it through ``pending``.
        snapshot = RoomConnected(
            room_id=room.room_id,
            client_id=client_id,
            user=participant.user_info(),
            user_list=[p.user_info() for p in room.participants.values()],
            streams=[s.info() for s in room.ready_streams(exclude_client=client_id)],
            ice_servers=list(self.ice_servers),
            room=room.to_meta(),
            initial_num_ats=room.initial_num_ats(self.max_talkers),
            max_talkers=self.max_talkers,
        )
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

    async def _announce(self, participant: Participant, snapshot: RoomConnected) -> None:
        """room-connected after the token ack, then whatever happened meanwhile."""
        # python-socketio queues the ack once the handler has returned; this task only runs
        # after that, and one more turn of the loop leaves a margin.
        await asyncio.sleep(0)
        await self._emit(participant.sid, snapshot)
        while participant.pending:
            await self._emit(participant.sid, participant.pending.pop(0))
        participant.announced = True

    async def _replace(self, old: Participant) -> None:
        """A rejoin while the old socket still looks alive: the old one goes first."""
        old_session = self._sessions.get(old.sid)
        if old_session is None:
            return
        await self._leave(old_session, cause="rejoined")
        self._spawn(self._disconnect_later(old_session, 0), name=f"replaced-{old.sid}")

    # ------------------------------------------------------------------ leaving

    async def _leave(self, session: Session, *, cause: str) -> None:
        """Remove everything the participant owned; others hear onRemoveStream per stream,
        then user-disconnected. Idempotent."""
        if not session.joined:
            return
        session.left = True
        self._cancel(session.leg_tasks.values())
        session.leg_tasks.clear()
        room = self.rooms.find(session.room_id or "")
        if room is None:
            return
        departure = room.remove_participant(session.client_id or "")
        if departure is None:
            return
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
            session = self._sessions.get(participant.sid)
            if session is not None:
                await self._leave(session, cause="room_deleted")
                await self.sio.disconnect(participant.sid)

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
        self._sessions.clear()
        tasks = list(self._tasks)
        self._cancel(tasks)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.sio.shutdown()

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
        stream = room.add_stream(
            participant,
            audio=event.audio,
            video=event.video,
            data=event.data,
            screen=bool(event.screen),
            name=event.name or participant.name,
        )
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
            raise RequestRefused(
                f"unpublish: stream {event.stream_id} is not yours", ErrorCode.STREAM_NOT_FOUND
            )
        await self._remove_stream(session, room, stream, cause="unpublish")
        return Ack().to_payload()

    async def _remove_stream(self, session: Session, room: Room, stream: Stream, *, cause: str) -> None:
        room.remove_stream(stream.id)
        self._cancel([t for k, t in session.leg_tasks.items() if k == ("publish", stream.id)])
        session.leg_tasks.pop(("publish", stream.id), None)
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
        task = session.leg_tasks.pop(("subscribe", event.stream_id), None)
        if task is not None:
            self._cancel([task])
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
            old = session.leg_tasks.pop((role, stream_id), None)
            if old is not None:
                self._cancel([old])
            if own:
                publish = await self.media.open_publish(room.room_id, stream_id, msg.sdp)
                coro = self._run_publish_leg(session, room, publish)
            else:
                subscribe = await self.media.open_subscribe(
                    room.room_id, participant.client_id, stream_id, msg.sdp
                )
                coro = self._run_subscribe_leg(session, room, subscribe)
            session.leg_tasks[(role, stream_id)] = self._spawn(
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

    async def _run_publish_leg(self, session: Session, room: Room, leg: PublishLeg) -> None:
        """Answer, wait for the media, then ``ready`` to the publisher and onAddStream to others."""
        stream_id = leg.stream_id
        answer = await leg.answer()
        await self._emit(session.sid, MediaEngineConnecting(stream_id=stream_id, msg=answer))
        connected = await _connected_in_time(leg)
        stream = room.streams.get(stream_id)
        if stream is None or self.media.publish_leg(room.room_id, stream_id) is not leg:
            return
        if not connected:
            log.warning("media_leg_failed", room=room.room_id, stream_id=stream_id, role="publish")
            await self._remove_stream(session, room, stream, cause="media_failed")
            return
        first = not stream.announced
        stream.state = "ready"
        await self._emit(session.sid, MediaEngineConnecting(stream_id=stream_id, msg=Ready()))
        if first:
            await self._broadcast(room, StreamAdded(stream=stream.info()), exclude=stream.client_id)
        log.info("stream_ready", room=room.room_id, stream_id=stream_id)
        await leg.wait_ended()
        if not leg.closed_by_server and room.streams.get(stream_id) is stream:
            log.warning("media_leg_failed", room=room.room_id, stream_id=stream_id, role="publish")
            await self._remove_stream(session, room, stream, cause="media_failed")

    async def _run_subscribe_leg(self, session: Session, room: Room, leg: SubscribeLeg) -> None:
        """Answer and ``ready`` keyed ``peerId`` (PROTOCOL.md section 5)."""
        stream_id = leg.stream_id
        answer = await leg.answer()
        await self._emit(session.sid, MediaEngineConnecting(stream_id=stream_id, msg=answer, subscriber=True))
        if not await _connected_in_time(leg):
            log.warning("media_leg_failed", room=room.room_id, stream_id=stream_id, role="subscribe")
            await self.media.close_subscribe(room.room_id, leg.client_id, stream_id, leg)
            return
        await self._emit(
            session.sid, MediaEngineConnecting(stream_id=stream_id, msg=Ready(), subscriber=True)
        )
        log.info("subscription_ready", room=room.room_id, stream_id=stream_id, client_id=leg.client_id)
        await leg.wait_ended()
        await self.media.close_subscribe(room.room_id, leg.client_id, stream_id, leg)


async def _connected_in_time(leg: PublishLeg | SubscribeLeg) -> bool:
    """Whether the leg's media came up before the official client would give up."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(READY_TIMEOUT_S):
            return await leg.wait_connected()
    return False
