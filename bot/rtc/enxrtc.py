"""``EnxRtc``: one participant in one room, with the method and callback names of EnableX's
Flutter plugin (``joinRoom`` -> :meth:`EnxRtc.join_room`, ``onRoomConnected`` ->
:attr:`EnxRtc.on_room_connected`, ...; the full table is ``bot.proto.names``).

How it runs: :meth:`EnxRtc.join_room` connects, sends ``token``, waits ``room-connected``,
fires ``on_room_connected`` and returns; from then on ONE dispatcher task takes the server's
events in arrival order from one queue, updates the room state and fires the callbacks, so
callbacks fire in server order. Publishing runs in its own task (gathering and waiting for the
media server), but its ``ready`` is seen by the dispatcher, and its failures are posted to the
same queue. Everything an instance owns hangs off the instance: many live in one process.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Coroutine, Mapping
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import structlog
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack, VideoStreamTrack

from bot.proto import (
    Ack,
    ActiveTalkersUpdated,
    BandwidthEvent,
    DropRequest,
    ErrorCode,
    GetMaxTalkers,
    MediaEngineConnecting,
    RoomConnected,
    SelfMuteRequest,
    StreamAdded,
    StreamRemoved,
    TokenEnvelope,
    TokenError,
    UnknownEvent,
    UnpublishRequest,
    UserConnected,
    UserDisconnected,
    UserMuteChanged,
    decode_token,
    redact,
)
from bot.proto.events import MediaKind

from . import devices
from .callbacks import Callback, CallbackName, Json, invoke
from .errors import MediaError, RoomError, SignallingError
from .messages import Rejoin, client_conn_event, publish_request, token_request
from .options import LocalInfo, RoomInfo
from .peer import PublishLeg
from .publication import LocalPublication
from .signalling import Inbound, Signalling, SocketClosed, signalling_url
from .state import RoomState

ROOM_CONNECTED_TIMEOUT_S = 10.0
DROP_TIMEOUT_S = 1.0
NO_PUBLISH_ROLES = frozenset({"viewer", "audience"})

NORMAL_DISCONNECT: Json = {"cause": int(ErrorCode.NORMAL_DISCONNECT), "msg": "normal-disconnect"}
UNEXPECTED_DISCONNECT: Json = {
    "cause": int(ErrorCode.UNEXPECTED_DISCONNECT),
    "msg": "unexpected-disconnection",
}

_log = structlog.get_logger(__name__)

Phase = Literal["idle", "connecting", "connected", "disconnecting", "disconnected"]


@dataclass(frozen=True)
class _MediaFailed:
    """Posted to the dispatcher queue by the publish task or a broken leg."""

    publication: LocalPublication
    error: RoomError


_Item = Inbound | _MediaFailed


class EnxRtc:
    """A headless EnableX participant (Flutter ``EnxRtc`` / ``EnxRoom``).

    ``audio_track``/``video_track`` are aiortc tracks to publish; when None and ``local_info``
    asks for that kind, silence / a black picture is sent. Tracks passed in are never stopped
    here (they may be shared); the ones created here are stopped on disconnect.
    """

    on_room_connected: Callback | None
    on_room_error: Callback | None
    on_room_disconnected: Callback | None
    on_user_connected: Callback | None
    on_user_disconnected: Callback | None
    on_published_stream: Callback | None
    on_unpublished_stream: Callback | None
    on_stream_added: Callback | None
    on_stream_removed: Callback | None
    on_active_talker_list: Callback | None
    on_room_bandwidth_alert: Callback | None
    on_bandwidth_updated: Callback | None
    on_remote_stream_audio_mute: Callback | None
    on_remote_stream_audio_unmute: Callback | None
    on_remote_stream_video_mute: Callback | None
    on_remote_stream_video_unmute: Callback | None
    on_connection_lost: Callback | None
    """Fired by reconnection (a later issue)."""
    on_connection_interrupted: Callback | None
    """Fired by reconnection (a later issue)."""
    on_reconnect: Callback | None
    """Fired by reconnection (a later issue)."""
    on_user_reconnect_success: Callback | None
    """Fired by reconnection (a later issue)."""

    def __init__(
        self,
        audio_track: MediaStreamTrack | None = None,
        video_track: MediaStreamTrack | None = None,
        *,
        label: str | None = None,
    ) -> None:
        self.on_room_connected = None
        self.on_room_error = None
        self.on_room_disconnected = None
        self.on_user_connected = None
        self.on_user_disconnected = None
        self.on_published_stream = None
        self.on_unpublished_stream = None
        self.on_stream_added = None
        self.on_stream_removed = None
        self.on_active_talker_list = None
        self.on_room_bandwidth_alert = None
        self.on_bandwidth_updated = None
        self.on_remote_stream_audio_mute = None
        self.on_remote_stream_audio_unmute = None
        self.on_remote_stream_video_mute = None
        self.on_remote_stream_video_unmute = None
        self.on_connection_lost = None
        self.on_connection_interrupted = None
        self.on_reconnect = None
        self.on_user_reconnect_success = None

        self._sources: dict[MediaKind, MediaStreamTrack | None] = {
            "audio": audio_track,
            "video": video_track,
        }
        self._owned: dict[MediaKind, MediaStreamTrack] = {}
        self._label = label or f"rtc-{id(self):x}"
        self._log: Any = _log.bind(rtc=self._label)
        self._phase: Phase = "idle"
        self._envelope: TokenEnvelope | None = None
        self._local = LocalInfo()
        self._room_info = RoomInfo()
        self._advance_options: object = None
        self._muted: dict[MediaKind, bool] = {"audio": False, "video": False}
        self._signalling: Signalling | None = None
        self._inbox: asyncio.Queue[_Item] | None = None
        self._room: RoomState | None = None
        self._external_ip = ""
        self._publication: LocalPublication | None = None
        self._publish_task: asyncio.Task[None] | None = None
        self._published_stream_id: int | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._dispatcher_busy = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._leaving: asyncio.Future[None] | None = None
        self._disconnected: asyncio.Future[Json] | None = None

    # ------------------------------------------------------------------ public: lifecycle

    async def join_room(
        self,
        token: str,
        local_info: Mapping[str, Any] | None = None,
        room_info: Mapping[str, Any] | None = None,
        advance_options: object = None,
    ) -> None:
        """Join the room (Flutter ``joinRoom``). Returns once ``on_room_connected`` has fired;
        publishing, if ``local_info`` asks for audio or video, goes on in the background and
        ends in ``on_published_stream`` or ``on_room_error`` (1160).

        Raises RoomError after firing ``on_room_error``: the token's or the server's code for
        a bad or refused token, 1161 when the signalling server cannot be reached or answers
        late, 1155 for malformed options.
        """
        if self._phase != "idle":
            raise RoomError(
                ErrorCode.ALREADY_IN_STATE,
                f"join_room called while {self._phase}: an EnxRtc joins one room, once",
            )
        self._phase = "connecting"
        try:
            self._local = LocalInfo.from_dict(local_info)
            self._room_info = RoomInfo.from_dict(room_info)
            self._advance_options = advance_options
            self._muted = {"audio": self._local.audio_muted, "video": self._local.video_muted}
            try:
                envelope = decode_token(token)
                self._envelope = envelope
                self._log = self._log.bind(room=envelope.room_id)
                envelope.check_expiry(time.time())
            except TokenError as exc:
                raise RoomError(exc.code, str(exc)) from None
            self._log.debug("join_started", host=envelope.host, token=redact(envelope.text))
            await self._join(envelope)
        except RoomError as err:
            await self._join_failed(err)
            raise
        except BaseException:
            await self._join_failed(None)
            raise

    async def disconnect(self) -> None:
        """Leave the room (Flutter ``disconnect``). Idempotent; safe from inside a callback.

        Fires ``on_unpublished_stream`` (if we published) then ``on_room_disconnected``
        ``{"cause": 2006, "msg": "normal-disconnect"}``.
        """
        if self._leaving is None:
            self._leaving = asyncio.ensure_future(self._finish(NORMAL_DISCONNECT, leave=True))
        await asyncio.shield(self._leaving)

    aclose = disconnect

    async def wait_disconnected(self) -> Json:
        """Wait until the room is left, for whatever reason; returns the
        ``on_room_disconnected`` payload (or ``{cause: code, msg}`` of a failed join)."""
        return await asyncio.shield(self._disconnected_future())

    async def __aenter__(self) -> EnxRtc:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    # ------------------------------------------------------------------ public: media

    async def mute_self_audio(self, mute: bool) -> None:
        """Stop (or resume) sending audio without renegotiating, and tell the room
        (``user-audio-muted`` / ``-unmuted``). RoomError 1171 when not connected."""
        await self._mute_self("audio", mute)

    async def mute_self_video(self, mute: bool) -> None:
        """As :meth:`mute_self_audio`, for video."""
        await self._mute_self("video", mute)

    def get_devices(self) -> list[str]:
        """Audio output devices (Flutter ``getDevices``): headless, so only ``NONE``."""
        return list(devices.AVAILABLE)

    def get_selected_device(self) -> str:
        return devices.DEFAULT

    # ------------------------------------------------------------------ public: getters

    def get_user_list(self) -> list[Json]:
        """Everyone in the room, ourselves included, as wire-named dicts."""
        return [] if self._room is None else self._room.user_list()

    def who_am_i(self) -> Json:
        return {} if self._room is None else self._room.me.to_payload()

    def get_room_id(self) -> str | None:
        return self.room_id

    def get_client_id(self) -> str | None:
        return self.client_id

    def get_client_name(self) -> str | None:
        if self._room is not None:
            return self._room.me.name
        return None if self._envelope is None else self._envelope.name

    def get_role(self) -> str | None:
        if self._room is not None:
            return self._room.me.role
        return None if self._envelope is None else self._envelope.role

    def get_max_talkers(self) -> int | None:
        return None if self._room is None else self._room.max_talkers

    @property
    def room_id(self) -> str | None:
        if self._room is not None:
            return self._room.room_id
        return None if self._envelope is None else self._envelope.room_id

    @property
    def client_id(self) -> str | None:
        return None if self._room is None else self._room.client_id

    @property
    def published_stream_id(self) -> int | None:
        """Our stream's id once ``on_published_stream`` fired."""
        return self._published_stream_id

    @property
    def phase(self) -> Phase:
        return self._phase

    def __repr__(self) -> str:
        token = "<none>" if self._envelope is None else redact(self._envelope.text)
        return (
            f"EnxRtc(label={self._label!r}, phase={self._phase!r}, room_id={self.room_id!r}, "
            f"client_id={self.client_id!r}, name={self.get_client_name()!r}, token={token})"
        )

    # ------------------------------------------------------------------ joining

    async def _join(self, envelope: TokenEnvelope, rejoin: Rejoin | None = None) -> None:
        """The whole join sequence, from socket to ``on_room_connected`` and the publish task.
        Written to be re-run with ``rejoin`` by a reconnect loop."""
        inbox: asyncio.Queue[_Item] = asyncio.Queue()
        self._inbox = inbox
        signalling = Signalling(
            signalling_url(envelope), host=envelope.host, sink=inbox.put_nowait, log=self._log
        )
        self._signalling = signalling
        await signalling.connect()

        ack = await signalling.request(token_request(envelope, rejoin))
        if not ack.ok:
            with suppress(RoomError):
                await signalling.request(
                    client_conn_event("clientConnFailed", envelope=envelope, now=time.time()),
                    within=DROP_TIMEOUT_S,
                )
            raise RoomError(ack.result, f"room server {envelope.host} refused the token: {ack.msg or '?'}")
        self._external_ip = str(ack.fields.get("connectedIP", ""))

        connected, early = await self._wait_room_connected(inbox, envelope.host)
        room = RoomState(connected)
        self._room = room
        self._log = self._log.bind(room=room.room_id, client_id=room.client_id)

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
                    external_ip=self._external_ip,
                )
            ),
            return_exceptions=True,
        )
        if isinstance(max_talkers, Ack) and max_talkers.ok:
            value = max_talkers.fields.get("maxTalkers")
            if isinstance(value, int) and not isinstance(value, bool):
                room.max_talkers = value
        else:
            self._log.warning("max_talkers_unknown", answer=repr(max_talkers))

        self._phase = "connected"
        self._log.debug("room_joined", users=len(room.users), streams=len(room.streams))
        await self._fire("on_room_connected", room.connected_payload())
        if self._phase != "connected":  # the callback disconnected
            return
        self._dispatcher = asyncio.create_task(self._dispatch(inbox, early), name=f"{self._label}-dispatcher")
        if self._may_publish(room):
            try:
                self._start_publishing(room, signalling)
            except Exception as exc:  # e.g. aiortc refusing the ICE configuration
                self._log.exception("publish_failed")
                await self._fire("on_room_error", MediaError(f"cannot start publishing: {exc}").to_payload())

    async def _wait_room_connected(
        self, inbox: asyncio.Queue[_Item], host: str
    ) -> tuple[RoomConnected, list[_Item]]:
        """``room-connected`` (10 s at most). Anything that arrives before it is kept for the
        dispatcher, in order."""
        early: list[_Item] = []
        try:
            async with asyncio.timeout(ROOM_CONNECTED_TIMEOUT_S):
                while True:
                    item = await inbox.get()
                    if isinstance(item, RoomConnected):
                        return item, early
                    if isinstance(item, SocketClosed):
                        raise SignallingError(
                            f"signalling server {host} closed the connection before "
                            f"room-connected ({item.reason})"
                        )
                    early.append(item)
        except TimeoutError:
            raise SignallingError(
                f"no room-connected from {host} within {ROOM_CONNECTED_TIMEOUT_S:g} s"
            ) from None

    async def _join_failed(self, err: RoomError | None) -> None:
        """A join that did not complete: report it (unless we are leaving), free everything."""
        if self._phase in ("disconnecting", "disconnected"):
            return  # disconnect() interrupted the join; it does the cleaning
        if err is not None:
            self._log.warning("join_failed", code=err.code, msg=err.msg)
            await self._fire("on_room_error", err.to_payload())
        self._phase = "disconnecting"
        await self._teardown(leave=False)
        self._stop_owned_tracks()
        self._phase = "disconnected"
        self._resolve_disconnected(
            {"cause": err.code, "msg": err.msg} if err is not None else UNEXPECTED_DISCONNECT
        )

    # ------------------------------------------------------------------ publishing

    def _may_publish(self, room: RoomState) -> bool:
        if not (self._local.audio or (self._local.video and not self._room_info.audio_only)):
            return False
        if room.me.role in NO_PUBLISH_ROLES or room.me.permissions.get("publish") is False:
            self._log.info("not_publishing", role=room.me.role, reason="role may not publish")
            return False
        return True

    def _track(self, kind: MediaKind) -> MediaStreamTrack:
        source = self._sources[kind]
        if source is not None:
            return source
        if kind not in self._owned:
            self._owned[kind] = AudioStreamTrack() if kind == "audio" else VideoStreamTrack()
        return self._owned[kind]

    def _start_publishing(self, room: RoomState, signalling: Signalling) -> None:
        wanted: dict[MediaKind, bool] = {
            "audio": self._local.audio,
            "video": self._local.video and not self._room_info.audio_only,
        }
        kinds = [kind for kind, want in wanted.items() if want]
        publication: LocalPublication | None = None

        def leg_failed(reason: str) -> None:
            if publication is not None:
                publication.leg_failed(reason)

        def broken(reason: str) -> None:
            if publication is not None:
                self._post(_MediaFailed(publication, MediaError(reason)))

        leg = PublishLeg(
            tracks={k: self._track(k) for k in kinds},
            ice_servers=room.connected.ice_servers,
            force_turn=self._room_info.force_turn,
            muted=self._muted,
            on_failed=leg_failed,
            log=self._log,
        )
        publication = LocalPublication(
            signalling=signalling,
            leg=leg,
            request=publish_request(self._local, room.connected, video=not self._room_info.audio_only),
            force_turn=self._room_info.force_turn,
            on_broken=broken,
            log=self._log,
        )
        self._publication = publication
        self._publish_task = asyncio.create_task(self._publish(publication), name=f"{self._label}-publish")

    async def _publish(self, publication: LocalPublication) -> None:
        try:
            await publication.run()
        except RoomError as err:
            self._post(_MediaFailed(publication, err))
        except Exception as exc:  # a bug or an aiortc surprise: still a media failure
            self._log.exception("publish_failed")
            self._post(_MediaFailed(publication, MediaError(f"publishing failed: {exc!r}")))

    async def _published(self, publication: LocalPublication, stream_id: int) -> None:
        """``ready``: tell the room our mute state (as the official client does), then the app."""
        self._published_stream_id = stream_id
        self._log.debug("stream_published", stream_id=stream_id)
        changes: list[tuple[MediaKind, bool]] = []
        for kind in publication.leg.kinds:
            at_publish = publication.request.mute_audio if kind == "audio" else publication.request.mute_video
            if self._muted[kind] or at_publish:
                changes.append((kind, self._muted[kind]))
        if changes:
            self._spawn(self._send_mutes(changes), "mute-on-join")
        await self._fire("on_published_stream", {"result": "0", "msg": "success", "streamId": stream_id})

    async def _send_mutes(self, changes: list[tuple[MediaKind, bool]]) -> None:
        for kind, muted in changes:
            await self._request_mute(kind, muted)

    async def _request_mute(self, kind: MediaKind, muted: bool) -> None:
        signalling = self._signalling
        if signalling is None:
            return
        try:
            ack = await signalling.request(SelfMuteRequest(kind=kind, muted=muted))
        except RoomError as err:
            self._log.warning("mute_not_sent", kind=kind, muted=muted, error=err.msg)
            return
        if not ack.ok:
            self._log.warning("mute_refused", kind=kind, muted=muted, code=ack.result, msg=ack.msg)

    async def _media_failed(self, item: _MediaFailed) -> None:
        """A publish leg that did not come up or broke: drop it, tell the app (1160)."""
        publication = item.publication
        if publication is not self._publication:
            return  # already replaced or torn down
        self._publication = None
        self._log.warning("media_failed", code=item.error.code, msg=item.error.msg)
        stream_id = publication.stream_id
        await publication.close()
        if stream_id is not None and self._signalling is not None:
            signalling = self._signalling
            self._spawn(_quietly(signalling.request(UnpublishRequest(stream_id=stream_id))), "unpublish")
        if self._published_stream_id == stream_id:
            self._published_stream_id = None
        await self._fire("on_room_error", item.error.to_payload())

    async def _mute_self(self, kind: MediaKind, mute: bool) -> None:
        if self._phase != "connected" or self._room is None:
            raise RoomError(ErrorCode.ROOM_NOT_CONNECTED, f"cannot mute {kind}: not in a room")
        if self._muted[kind] == mute:
            self._log.debug("mute_unchanged", kind=kind, muted=mute)
            return
        self._muted[kind] = mute
        self._room.set_self_muted(kind, mute)
        publication = self._publication
        if publication is not None:
            publication.leg.set_sending(kind, not mute)
        if publication is None or publication.state == "ready":
            await self._request_mute(kind, mute)
        # else: sent once the stream is ready (_published)

    # ------------------------------------------------------------------ the dispatcher

    def _post(self, item: _Item) -> None:
        if self._inbox is not None:
            self._inbox.put_nowait(item)

    async def _dispatch(self, inbox: asyncio.Queue[_Item], early: list[_Item]) -> None:
        """The one consumer of server events: state updates and callbacks, in arrival order."""
        backlog = deque(early)  # arrived before room-connected: first, in order
        while self._phase == "connected":
            item = backlog.popleft() if backlog else await inbox.get()
            self._dispatcher_busy = True
            try:
                await self._handle(item)
            except Exception:  # a bug in a handler must not end the session
                self._log.exception("event_failed", item=type(item).__name__)
            finally:
                self._dispatcher_busy = False

    async def _handle(self, item: _Item) -> None:
        room = self._room
        assert room is not None
        match item:
            case SocketClosed(reason=reason):
                await self._connection_lost(reason)
            case _MediaFailed():
                await self._media_failed(item)
            case UserConnected(user=user):
                room.add_user(user)
                self._log.debug("remote_user_joined", name=user.name, other=user.client_id)
                await self._fire("on_user_connected", user.to_payload())
            case UserDisconnected():
                room.remove_user(item.client_id)
                self._log.debug("remote_user_left", name=item.name, other=item.client_id)
                await self._fire("on_user_disconnected", item.to_payload())
            case StreamAdded(stream=stream):
                if stream.client_id == room.client_id or (
                    self._publication is not None and stream.id == self._publication.stream_id
                ):
                    self._log.debug("own_stream_announced", stream_id=stream.id)
                    return
                room.add_stream(stream)
                self._log.debug("remote_stream_added", stream_id=stream.id, other=stream.client_id)
                await self._fire("on_stream_added", stream.to_payload())
            case StreamRemoved(stream_id=stream_id):
                publication = self._publication
                if publication is not None and stream_id == publication.stream_id:
                    self._post(_MediaFailed(publication, MediaError("the server removed our stream")))
                    return
                room.remove_stream(stream_id)
                self._log.debug("remote_stream_removed", stream_id=stream_id)
                await self._fire("on_stream_removed", {"id": stream_id})
            case MediaEngineConnecting():
                await self._route_media(item)
            case UserMuteChanged():
                room.apply_mute(item)
                await self._fire(_mute_callback(item), item.to_payload())
            case ActiveTalkersUpdated():
                await self._fire("on_active_talker_list", item.to_payload())
            case BandwidthEvent():
                await self._bandwidth(item)
            case RoomConnected():
                self._log.warning("unexpected_room_connected")
            case UnknownEvent(name=name):
                self._log.debug("unknown_event", event=name)

    async def _route_media(self, item: MediaEngineConnecting) -> None:
        publication = self._publication
        if (
            item.subscriber
            or publication is None
            or publication.stream_id is None
            or item.stream_id != publication.stream_id
        ):
            self._log.debug("media_message_unrouted", stream_id=item.stream_id, subscriber=item.subscriber)
            return
        if publication.deliver(item.msg):
            await self._published(publication, item.stream_id)

    async def _bandwidth(self, event: BandwidthEvent) -> None:
        msg = event.msg
        if (
            event.id == "publisher-bw"
            and isinstance(msg, dict)
            and msg.get("message") == "SubscriberBandWidth"
        ):
            await self._fire("on_room_bandwidth_alert", dict(msg))
        else:
            await self._fire("on_bandwidth_updated", event.to_payload())

    async def _fire(self, name: CallbackName, payload: Json) -> None:
        self._log.debug("callback", callback=name)
        await invoke(getattr(self, name), payload, name=name, log=self._log)

    # ------------------------------------------------------------------ leaving

    async def _connection_lost(self, reason: str) -> None:
        """The socket ended without us asking. Reconnection (a later issue) slots in here:
        re-run :meth:`_join` with a :class:`Rejoin`. For now the room is left."""
        self._log.warning("connection_lost", reason=reason)
        if self._leaving is None:
            self._leaving = asyncio.ensure_future(self._finish(UNEXPECTED_DISCONNECT, leave=False))
        await asyncio.shield(self._leaving)

    async def _finish(self, payload: Json, *, leave: bool) -> None:
        """The one way out of a room: stop the dispatcher, close the leg, say goodbye (when
        ``leave``), close the socket, stop our own tracks, then the callbacks."""
        was = self._phase
        if was in ("disconnecting", "disconnected"):
            return  # a failed join already cleaned up
        self._phase = "disconnecting"
        if was == "connecting":
            self._post(SocketClosed(reason="disconnect() called"))  # wakes a waiting join
        await self._stop_dispatcher()
        stream_id = self._published_stream_id
        await self._teardown(leave=leave)
        self._stop_owned_tracks()
        self._phase = "disconnected"
        self._log.debug("room_left", cause=payload["cause"], msg=payload["msg"])
        if was == "connected":
            if stream_id is not None and leave:
                await self._fire(
                    "on_unpublished_stream", {"result": "0", "msg": "success", "streamId": stream_id}
                )
            await self._fire("on_room_disconnected", dict(payload))
        self._resolve_disconnected(payload)

    async def _stop_dispatcher(self) -> None:
        """Cancel the dispatcher while it waits for an event; if it is busy (inside a callback
        that may well be awaiting this very disconnect) let it see the phase and stop."""
        task = self._dispatcher
        if task is None or task.done() or task is asyncio.current_task():
            return
        if not self._dispatcher_busy:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def _teardown(self, *, leave: bool) -> None:
        """Close the publish leg and the socket (after ``unpublish`` and ``drop`` if
        ``leave``). Leaves the callbacks and the phase to the caller."""
        publication, self._publication = self._publication, None
        task, self._publish_task = self._publish_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        for spawned in list(self._tasks):
            if spawned is not asyncio.current_task():
                spawned.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        stream_id = None if publication is None else publication.stream_id
        if publication is not None:
            await publication.close()
        signalling, self._signalling = self._signalling, None
        if signalling is None:
            return
        if leave and signalling.connected:
            requests: list[Coroutine[Any, Any, Ack]] = []
            if stream_id is not None:
                requests.append(signalling.request(UnpublishRequest(stream_id=stream_id), DROP_TIMEOUT_S))
            requests.append(signalling.request(DropRequest(), DROP_TIMEOUT_S))
            for result in await asyncio.gather(*requests, return_exceptions=True):
                if isinstance(result, BaseException):
                    self._log.debug("leave_request_failed", error=str(result))
        await signalling.close()

    def _stop_owned_tracks(self) -> None:
        for track in self._owned.values():
            track.stop()
        self._owned.clear()

    # ------------------------------------------------------------------ helpers

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=f"{self._label}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _disconnected_future(self) -> asyncio.Future[Json]:
        if self._disconnected is None:
            self._disconnected = asyncio.get_running_loop().create_future()
        return self._disconnected

    def _resolve_disconnected(self, payload: Json) -> None:
        future = self._disconnected_future()
        if not future.done():
            future.set_result(dict(payload))


def _mute_callback(event: UserMuteChanged) -> CallbackName:
    if event.kind == "audio":
        return "on_remote_stream_audio_mute" if event.muted else "on_remote_stream_audio_unmute"
    return "on_remote_stream_video_mute" if event.muted else "on_remote_stream_video_unmute"


async def _quietly(request: Coroutine[Any, Any, Ack]) -> None:
    with suppress(RoomError):
        await request
