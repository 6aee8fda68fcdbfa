"""``EnxRtc``: one participant in one room, with the method and callback names of EnableX's
Flutter plugin (``joinRoom`` -> :meth:`EnxRtc.join_room`, ``onRoomConnected`` ->
:attr:`EnxRtc.on_room_connected`, ...; the full table is ``bot.proto.names``).

How it runs: :meth:`EnxRtc.join_room` connects, sends ``token``, waits ``room-connected``,
fires ``on_room_connected`` and returns; from then on ONE dispatcher task takes the server's
events in arrival order from one queue, updates the room state and fires the callbacks, so
callbacks fire in server order. Publishing runs in its own task (gathering and waiting for the
media server), but its ``ready`` is seen by the dispatcher, and its failures are posted to the
same queue. Everything an instance owns hangs off the instance: many live in one process.

Surviving the network (PROTOCOL.md section 8; policy in ``reconnect.py``): a loss is the socket
closing without our asking (python-socketio's disconnect, Engine.IO's ping timeout included), the
publish leg failing, or the media server no longer acknowledging our media (``publication.py``).
The dispatcher then fires ``on_connection_lost`` (``on_connection_interrupted`` when the local
network path the media used is gone), and a reconnect task re-runs the join with a
:class:`~bot.rtc.messages.Rejoin`: new socket, ``token`` with the rejoin fields, re-publish with
a new stream id (the old one is never unpublished), ``on_user_reconnect_success``. Giving up
ends the session like any other loss: ``on_room_disconnected {cause: 1165|1166|1178}``.

Receiving (PROTOCOL.md section 5; signalling in ``subscription.py``, media in ``peer.py``): a
subscription is a receive-only leg per remote stream, started by :meth:`EnxRtc.subscribe` or, in
the automatic modes, for the streams ``room-connected`` lists (the official client's slot rule)
and for each ``onAddStream``. Its encoded frames go to a sink (``bot.media.EncodedSink``, a
``DiscardSink`` unless ``sink_factory`` says otherwise): nothing is decoded unless the sink
decodes. ``onRemoveStream`` closes the leg locally (no ``unsubscribe``), leaving closes them
all, and a rejoin subscribes again (the automatic choice, or the streams subscribed by hand
that still exist) before re-publishing.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from contextlib import suppress
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

import structlog
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack, VideoStreamTrack

from bot.media.sinks import DiscardSink, EncodedSink
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
    StreamInfo,
    StreamRemoved,
    TokenEnvelope,
    TokenError,
    UnknownEvent,
    UnpublishRequest,
    UnsubscribeRequest,
    UserConnected,
    UserDisconnected,
    UserMuteChanged,
    decode_token,
    redact,
)
from bot.proto.events import MediaKind

from . import devices, reconnect
from .bandwidth import BandwidthState, CapVideo, HoldVideo, Notify
from .callbacks import Callback, CallbackName, Json, invoke
from .errors import MediaError, RoomError, SignallingError
from .messages import Rejoin, client_conn_event, publish_request, token_request
from .options import LocalInfo, RoomInfo, SubscribeOptions, listed_streams_to_subscribe
from .peer import PublishLeg, SubscribeLeg
from .publication import LocalPublication
from .reconnect import GiveUp, ReconnectPolicy
from .signalling import Inbound, Signalling, SocketClosed, signalling_url
from .state import RoomState
from .stats import DEFAULT_WINDOW_S, interval, receive_stats, send_stats
from .subscription import RemoteSubscription

ROOM_CONNECTED_TIMEOUT_S = 10.0
DROP_TIMEOUT_S = 1.0
NO_PUBLISH_ROLES = frozenset({"viewer", "audience"})

NORMAL_DISCONNECT: Json = {"cause": int(ErrorCode.NORMAL_DISCONNECT), "msg": "normal-disconnect"}
UNEXPECTED_DISCONNECT: Json = {
    "cause": int(ErrorCode.UNEXPECTED_DISCONNECT),
    "msg": "unexpected-disconnection",
}

_log = structlog.get_logger(__name__)

Phase = Literal["idle", "connecting", "connected", "reconnecting", "disconnecting", "disconnected"]
IN_ROOM: frozenset[Phase] = frozenset({"connected", "reconnecting"})
"""Phases in which the application is in a room (it heard on_room_connected, not yet left)."""
VideoHold = Literal["audio_only_mode", "bandwidth"]


@dataclass(frozen=True)
class _MediaFailed:
    """Posted to the dispatcher queue by the publish task or a broken leg."""

    publication: LocalPublication
    error: RoomError


@dataclass(frozen=True)
class _LinkLost:
    """Posted when a ready publish leg broke or went silent and reconnection is allowed."""

    publication: LocalPublication
    reason: str


@dataclass(frozen=True)
class _SubscribeFailed:
    """Posted by a subscription's task when it did not come up."""

    subscription: RemoteSubscription
    error: RoomError


@dataclass(frozen=True)
class _SubscriptionBroken:
    """Posted when a ready subscribe leg failed or was closed by the media server."""

    subscription: RemoteSubscription
    reason: str


_Item = Inbound | _MediaFailed | _LinkLost | _SubscribeFailed | _SubscriptionBroken


class EnxRtc:
    """A headless EnableX participant (Flutter ``EnxRtc`` / ``EnxRoom``).

    ``audio_track``/``video_track`` are aiortc tracks to publish; when None and ``local_info``
    asks for that kind, silence / a black picture is sent. Tracks passed in are never stopped
    here (they may be shared); the ones created here are stopped on disconnect.

    Receiving (see :class:`~bot.rtc.options.SubscribeOptions`): ``subscribe`` is ``"none"``
    (the default, Flutter's way: call :meth:`subscribe`), ``"all"``, ``"audio"`` (audio only)
    or a list of participant names; ``max_video_subscriptions`` caps the streams received with
    video (the rest audio only); ``sink_factory(stream_info)`` gives each subscribe leg its
    ``bot.media.EncodedSink`` (default ``DiscardSink``); ``stats_interval_s`` fires
    ``on_stats`` periodically. Bad values raise RoomError 1155.
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
    """``{id}``: the stream is gone; our subscription to it (if any) is already closed."""
    on_subscribed_stream: Callback | None
    """A subscription is ready: ``{result: "0", msg, streamId, clientId, name, audio, video,
    tapped}`` (``audio``/``video``: what we receive; ``tapped``: frames reach the sink)."""
    on_active_talker_list: Callback | None
    on_room_bandwidth_alert: Callback | None
    """The room says our downlink cannot carry its video (``SubscriberBandWidth``)."""
    on_room_bandwidth_restored: Callback | None
    """That alert is lifted, or every remote stream reported low is ``restored`` again."""
    on_bandwidth_updated: Callback | None
    on_remote_stream_audio_mute: Callback | None
    on_remote_stream_audio_unmute: Callback | None
    on_remote_stream_video_mute: Callback | None
    on_remote_stream_video_unmute: Callback | None
    on_connection_lost: Callback | None
    """``{cause: 1163, msg}``: the connection broke; reconnection starts (if allowed)."""
    on_connection_interrupted: Callback | None
    """As ``on_connection_lost``, when the local network path (address, route) is gone."""
    on_reconnect: Callback | None
    """``{attempt, attempts, msg}`` before each rejoin attempt."""
    on_user_reconnect_success: Callback | None
    """Back in the room: the room payload (as ``on_room_connected``) plus ``attempt``,
    ``elapsed_ms`` (from the loss) and ``streamId`` (our new stream, None if not publishing)."""
    on_stats: Callback | None
    """Every ``stats_interval_s`` while in the room: the :meth:`stats` payload."""

    def __init__(
        self,
        audio_track: MediaStreamTrack | None = None,
        video_track: MediaStreamTrack | None = None,
        *,
        label: str | None = None,
        subscribe: str | list[str] | tuple[str, ...] = "none",
        max_video_subscriptions: int | None = None,
        sink_factory: Callable[[Json], EncodedSink] | None = None,
        stats_interval_s: float | None = None,
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
        self.on_subscribed_stream = None
        self.on_active_talker_list = None
        self.on_room_bandwidth_alert = None
        self.on_room_bandwidth_restored = None
        self.on_bandwidth_updated = None
        self.on_remote_stream_audio_mute = None
        self.on_remote_stream_audio_unmute = None
        self.on_remote_stream_video_mute = None
        self.on_remote_stream_video_unmute = None
        self.on_connection_lost = None
        self.on_connection_interrupted = None
        self.on_reconnect = None
        self.on_user_reconnect_success = None
        self.on_stats = None

        self._receive = SubscribeOptions.build(
            subscribe, max_video_subscriptions, sink_factory, stats_interval_s
        )
        self._subscriptions: dict[int, RemoteSubscription] = {}
        self._manual: dict[int, tuple[bool, bool]] = {}
        """Streams subscribed by :meth:`subscribe` (and the kinds asked), for a rejoin."""
        self._declined: set[int] = set()
        """Streams given up by :meth:`unsubscribe`: the automatic modes leave them alone."""
        self._tap_receivers = True  # tests turn it off to exercise the fallback
        self._lean_receive = True  # tests and benchmarks turn it off to compare
        self._warned: set[str] = set()
        self._stats_task: asyncio.Task[None] | None = None
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
        self._holds: set[VideoHold] = set()
        self._bw = BandwidthState()
        self._last_client_id: str | None = None
        self._lost_at = 0.0
        self._reconnector: asyncio.Task[None] | None = None
        self._attempt: asyncio.Future[int] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._firing: set[asyncio.Task[Any]] = set()

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

    async def set_audio_only_mode(self, enable: bool) -> None:
        """Stop (or resume) sending video while staying published and keeping audio (Flutter
        ``setAudioOnlyMode``); the room is told ``user-video-muted``/``-unmuted``. Independent
        of :meth:`mute_self_video`: video flows only when neither holds it. RoomError 1171
        when not in a room."""
        if self._phase not in IN_ROOM or self._room is None:
            raise RoomError(ErrorCode.ROOM_NOT_CONNECTED, "cannot set audio-only mode: not in a room")
        await self._hold_video("audio_only_mode", enable)

    async def subscribe(
        self, stream_id: int | str, *, audio: bool | None = None, video: bool | None = None
    ) -> None:
        """Receive a remote stream (Flutter ``subscribe(streamId)``): returns once the
        subscription has started; ``on_subscribed_stream`` fires when its leg is ready
        (``on_room_error`` 1160 if it never is). ``audio``/``video`` False leaves that kind
        out; ``max_video_subscriptions`` still applies. It is subscribed again after a rejoin
        (if the stream is still there). RoomError: 1171 not in a room, 1159 no such stream,
        1177 already subscribed, 1155 nothing left to receive.
        """
        room = self._room
        if self._phase != "connected" or room is None or self._signalling is None:
            raise RoomError(ErrorCode.ROOM_NOT_CONNECTED, f"cannot subscribe to {stream_id}: not in a room")
        try:
            sid = int(stream_id)
        except (TypeError, ValueError):
            raise RoomError(
                ErrorCode.INVALID_PARAMETERS, f"stream id {stream_id!r} is not a number"
            ) from None
        stream = room.streams.get(sid)
        if stream is None:
            raise RoomError(ErrorCode.STREAM_NOT_FOUND, f"no stream {sid} in the room to subscribe to")
        if sid in self._subscriptions:
            raise RoomError(ErrorCode.ALREADY_IN_STATE, f"already subscribed to stream {sid}")
        if not self._may_subscribe(room):
            raise RoomError(ErrorCode.NOT_PERMITTED, f"role {room.me.role!r} may not subscribe")
        want_audio, want_video = self._receive.kinds(stream, self._video_legs())
        want_audio = want_audio and audio is not False
        want_video = want_video and video is not False
        if not (want_audio or want_video):
            raise RoomError(
                ErrorCode.INVALID_PARAMETERS,
                f"nothing to receive of stream {sid} (audio={stream.audio}, video={stream.video}, "
                f"asked audio={audio}, video={video})",
            )
        self._manual[sid] = (audio is not False, video is not False)
        self._declined.discard(sid)
        self._start_subscription(stream, want_audio, want_video)

    async def unsubscribe(self, stream_id: int | str) -> None:
        """Stop receiving a remote stream: its leg closes, the room is told (``unsubscribe``),
        and neither the automatic modes nor a rejoin subscribe to it again (until it is
        published anew, with a new id, or :meth:`subscribe` asks). RoomError: 1171 not in a
        room, 1159 not subscribed to it (or the room refused)."""
        room, signalling = self._room, self._signalling
        if self._phase != "connected" or room is None or signalling is None:
            raise RoomError(ErrorCode.ROOM_NOT_CONNECTED, f"cannot unsubscribe {stream_id}: not in a room")
        try:
            sid = int(stream_id)
        except (TypeError, ValueError):
            raise RoomError(
                ErrorCode.INVALID_PARAMETERS, f"stream id {stream_id!r} is not a number"
            ) from None
        if sid not in self._subscriptions:
            raise RoomError(ErrorCode.STREAM_NOT_FOUND, f"not subscribed to stream {sid}")
        self._manual.pop(sid, None)
        self._declined.add(sid)
        had_video = self._receives_video(sid)
        await self._close_subscription(sid)
        ack = await signalling.request(UnsubscribeRequest(stream_id=sid))
        if not ack.ok:
            raise RoomError(ack.result or ErrorCode.STREAM_NOT_FOUND, f"unsubscribe {sid}: {ack.msg}")
        self._log.info("unsubscribed_stream", stream_id=sid)
        if had_video:
            await self._promote_video()

    def _receives_video(self, stream_id: int) -> bool:
        subscription = self._subscriptions.get(stream_id)
        return subscription is not None and subscription.video

    async def _promote_video(self) -> None:
        """A video leg ended: under ``max_video_subscriptions``, the first stream received audio
        only for want of a video slot (an automatic subscription whose stream has video) is
        subscribed again with video (``unsubscribe``, then ``subscribe``: a short audio gap)."""
        room, signalling = self._room, self._signalling
        if self._phase != "connected" or room is None or signalling is None:
            return
        if self._receive.max_video_subscriptions is None or self._receive.mode == "audio":
            return
        for sid, subscription in list(self._subscriptions.items()):
            stream = room.streams.get(sid)
            if stream is None or subscription.video or not stream.video or sid in self._manual:
                continue
            audio, video = self._receive.kinds(stream, self._video_legs())
            if not video:
                return  # no slot free
            await self._close_subscription(sid)
            try:
                ack = await signalling.request(UnsubscribeRequest(stream_id=sid))
            except RoomError as err:  # the socket went: a rejoin subscribes afresh
                self._log.info("video_promotion_failed", stream_id=sid, code=err.code, msg=err.msg)
                return
            if not ack.ok:
                self._log.warning("video_promotion_failed", stream_id=sid, code=ack.result, msg=ack.msg)
                return
            self._log.info("video_promoted", stream_id=sid)
            self._start_subscription(stream, audio, video)
            return

    @property
    def subscribed_stream_ids(self) -> list[int]:
        """The remote streams we have a subscription to (ready or still coming up)."""
        return list(self._subscriptions)

    async def stats(self) -> Json:
        """What every leg is doing, with rates over the last interval (at least
        ``stats_interval_s``, else 1 s, back from now; since the leg started if it is younger);
        one ``getStats()`` per leg.

        ``{"publish": None | {...}, "subscriptions": [{...}, ...]}``:

        - ``publish``: ``{streamId, state, connectionState, selectedPair: {local, remote} |
          None, packetsSent: {kind: n}, bytesSent: {kind: n}, sending: {kind: bool},
          videoBitrate, packetVideo, interval, audio, video}`` where each side of
          ``selectedPair`` is ``{type, address, port, protocol, relatedAddress}`` and
          ``audio``/``video`` (the kinds sent) are ``{bitrateKbps, packetsSent, bytesSent,
          packetsLost, fractionLost, jitter, roundTripTime}`` (the last four from the media
          server's receiver reports; None before the first). ``videoBitrate`` is the encoder's
          target (None for pre-encoded video, ``packetVideo`` true: its rate is the source's).
        - each subscription: ``{streamId, clientId, name, state, connectionState, tapped,
          sink, interval, audio, video}`` where the kinds received are ``{bitrateKbps,
          framesPerSecond, fractionLost, packetsReceived, packetsLost, jitter, roundTripTime,
          bytesReceived, frames, keyframes, keyframeRequests, remotePacketsSent,
          remoteBytesSent, firstFrameMs, firstKeyframeMs}``. ``roundTripTime`` is None: aiortc
          measures none on a receive-only leg. ``firstFrameMs``: from :meth:`subscribe` (or
          the automatic start) to the first frame of that kind.

        ``jitter`` and ``roundTripTime`` are in seconds, ``interval`` too (None on a leg's
        first sample: no rates yet).
        """
        publication = self._publication
        publish = None if publication is None else await self._publish_stats(publication)
        subscriptions = await asyncio.gather(
            *(self._subscription_stats(s) for s in self._subscriptions.values())
        )
        return {"publish": publish, "subscriptions": list(subscriptions)}

    async def _publish_stats(self, publication: LocalPublication) -> Json:
        leg = publication.leg
        pair = publication.selected_pair()
        out: Json = {
            "streamId": publication.stream_id,
            "state": publication.state,
            "connectionState": leg.connection_state,
            "selectedPair": None if pair is None else pair.to_dict(),
            "sending": {kind: leg.is_sending(kind) for kind in leg.kinds},
            "videoBitrate": leg.video_bitrate,
            "packetVideo": leg.sends_packets("video"),
        }
        try:
            samples = await leg.sample()
        except Exception:  # a leg closing under us: report what is known
            self._log.debug("stats_failed", leg="publish", exc_info=True)
            samples = {}
        out["packetsSent"] = {kind: current.packets_sent for kind, (_, current) in samples.items()}
        out["bytesSent"] = {kind: current.bytes_sent for kind, (_, current) in samples.items()}
        out["interval"] = next((interval(prev.at, cur.at) for prev, cur in samples.values()), None)
        for kind, (previous, current) in samples.items():
            out[kind] = send_stats(previous, current)
        return out

    async def _subscription_stats(self, subscription: RemoteSubscription) -> Json:
        leg = subscription.leg
        out: Json = {
            "streamId": subscription.stream_id,
            "clientId": subscription.stream.client_id,
            "name": subscription.stream.name,
            "state": subscription.state,
            "connectionState": leg.connection_state,
            "tapped": leg.tapped,
            "sink": type(leg.sink).__name__,
        }
        try:
            samples = await leg.sample()
        except Exception:
            self._log.debug("stats_failed", leg="subscribe", stream_id=subscription.stream_id, exc_info=True)
            samples = {}
        out["interval"] = next((interval(prev.at, cur.at) for prev, cur in samples.values()), None)
        for kind, (previous, current) in samples.items():
            kind_stats = receive_stats(previous, current)
            counters = leg.counters(kind)
            for key, at in (
                ("firstFrameMs", None if counters is None else counters.first_frame_at),
                ("firstKeyframeMs", None if counters is None else counters.first_keyframe_at),
            ):
                kind_stats[key] = None if at is None else round((at - subscription.started_at) * 1000, 1)
            out[kind] = kind_stats
        return out

    def get_devices(self) -> list[str]:
        """Audio output devices (Flutter ``getDevices``): headless, so ``NONE`` (received audio
        is discarded), and ``FILE`` when the ``sink_factory`` records (see ``bot.rtc.devices``)."""
        output = devices.output_of(self._receive.sink_factory)
        return list(devices.AVAILABLE if output is None else output.devices)

    def get_selected_device(self) -> str:
        """Where received audio goes now (Flutter ``getSelectedDevice``)."""
        output = devices.output_of(self._receive.sink_factory)
        return devices.DEFAULT if output is None else output.selected

    def switch_media_device(self, device: str) -> bool:
        """Send received audio to ``device`` (Flutter ``switchMediaDevice``), one of
        :meth:`get_devices`, from now on (legs already up included). Returns True when it is
        selected; an unknown device is an error: logged, nothing changes, False."""
        output = devices.output_of(self._receive.sink_factory)
        if output is None:
            ok = device == devices.DEFAULT
        else:
            ok = device in output.devices and output.select(device)
        if not ok:
            self._log.error("switch_media_device_failed", device=device, devices=self.get_devices())
        return ok

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

    async def _join(self, envelope: TokenEnvelope) -> None:
        """The first join: session, ``on_room_connected``, the dispatcher, publishing."""
        signalling, inbox, room, early = await self._open(envelope)
        self._phase = "connected"
        self._log.debug("room_joined", users=len(room.users), streams=len(room.streams))
        await self._fire("on_room_connected", room.connected_payload())
        if self._phase != "connected":  # the callback disconnected
            return
        self._dispatcher = asyncio.create_task(self._dispatch(inbox, early), name=f"{self._label}-dispatcher")
        if self._receive.stats_interval_s is not None:
            self._stats_task = asyncio.create_task(
                self._report_stats(self._receive.stats_interval_s), name=f"{self._label}-stats"
            )
        self._subscribe_on_join(room)
        if self._may_publish(room):
            try:
                self._start_publishing(room, signalling)
            except Exception as exc:  # e.g. aiortc refusing the ICE configuration
                self._log.exception("publish_failed")
                await self._fire("on_room_error", MediaError(f"cannot start publishing: {exc}").to_payload())

    async def _open(
        self, envelope: TokenEnvelope, rejoin: Rejoin | None = None
    ) -> tuple[Signalling, asyncio.Queue[_Item], RoomState, list[_Item]]:
        """One signalling session, from socket to ``room-connected`` (and the two requests
        the official client makes right after). Shared by the first join and every rejoin."""
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
        client_id = ack.fields.get("clientId")
        if isinstance(client_id, str) and client_id:
            self._last_client_id = client_id  # what the server now knows us as, for a rejoin

        connected, early = await self._wait_room_connected(inbox, envelope.host)
        room = RoomState(connected)
        self._room = room
        self._last_client_id = room.client_id
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
        # our own mute state, as the room will hear it once we publish
        for kind in ("audio", "video"):
            room.set_self_muted(kind, not self._sending(kind))
        return signalling, inbox, room, early

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

    def _sending(self, kind: MediaKind) -> bool:
        """Whether ``kind`` should flow: not muted by the app, and for video not held by
        audio-only mode or the room's bandwidth verdict."""
        if self._muted[kind]:
            return False
        return kind != "video" or not self._holds

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
            if publication is None:
                return
            if self._room_info.allow_reconnect:
                self._post(_LinkLost(publication, reason))
            else:
                self._post(_MediaFailed(publication, MediaError(reason)))

        leg = PublishLeg(
            tracks={k: self._track(k) for k in kinds},
            ice_servers=room.connected.ice_servers,
            force_turn=self._room_info.force_turn,
            muted={k: not self._sending(k) for k in kinds},
            on_failed=leg_failed,
            rate_window_s=self._rate_window_s,
            log=self._log,
        )
        if self._bw.cap_kbps is not None:
            leg.set_video_cap(self._bw.cap_kbps * 1000)
        local = replace(
            self._local, audio_muted=not self._sending("audio"), video_muted=not self._sending("video")
        )
        publication = LocalPublication(
            signalling=signalling,
            leg=leg,
            request=publish_request(local, room.connected, video=not self._room_info.audio_only),
            force_turn=self._room_info.force_turn,
            on_broken=broken,
            log=self._log,
        )
        self._publication = publication
        self._publish_task = asyncio.create_task(self._publish(publication), name=f"{self._label}-publish")

    async def _publish(self, publication: LocalPublication) -> None:
        """Publish, then (when reconnection is allowed) watch that the media server still
        hears us, for as long as the leg is ready."""
        try:
            await publication.run()
        except RoomError as err:
            self._post(_MediaFailed(publication, err))
            return
        except Exception as exc:  # a bug or an aiortc surprise: still a media failure
            self._log.exception("publish_failed")
            self._post(_MediaFailed(publication, MediaError(f"publishing failed: {exc!r}")))
            return
        if self._room_info.allow_reconnect:
            await publication.watch()

    async def _published(self, publication: LocalPublication, stream_id: int) -> None:
        """``ready``: tell the room our mute state (as the official client does), then the app
        (a rejoin's re-publish is reported by ``on_user_reconnect_success`` instead)."""
        self._published_stream_id = stream_id
        self._log.debug("stream_published", stream_id=stream_id)
        changes: list[tuple[MediaKind, bool]] = []
        for kind in publication.leg.kinds:
            at_publish = publication.request.mute_audio if kind == "audio" else publication.request.mute_video
            muted = not self._sending(kind)
            if muted or at_publish:
                changes.append((kind, muted))
        if changes:
            self._spawn(self._send_mutes(changes), "mute-on-join")
        attempt = self._attempt
        if self._phase == "reconnecting" and attempt is not None:
            if not attempt.done():
                attempt.set_result(stream_id)
            return
        await self._fire("on_published_stream", {"result": "0", "msg": "success", "streamId": stream_id})

    async def _send_mutes(self, changes: list[tuple[MediaKind, bool]]) -> None:
        for kind, muted in changes:
            await self._request_mute(kind, muted)

    async def _request_mute(self, kind: MediaKind, muted: bool) -> None:
        signalling = self._signalling
        if signalling is None or not signalling.connected:
            return  # a rejoin's re-publish tells the room
        try:
            ack = await signalling.request(SelfMuteRequest(kind=kind, muted=muted))
        except RoomError as err:
            self._log.warning("mute_not_sent", kind=kind, muted=muted, error=err.msg)
            return
        if not ack.ok:
            self._log.warning("mute_refused", kind=kind, muted=muted, code=ack.result, msg=ack.msg)

    async def _media_failed(self, item: _MediaFailed) -> None:
        """A publish leg that did not come up or broke: drop it, tell the app (1160). During a
        rejoin attempt it fails the attempt instead (the next one publishes again)."""
        publication = item.publication
        if publication is not self._publication:
            return  # already replaced or torn down
        attempt = self._attempt
        if self._phase == "reconnecting" and attempt is not None:
            if not attempt.done():
                attempt.set_exception(item.error)
            return
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
        if self._phase not in IN_ROOM or self._room is None:
            raise RoomError(ErrorCode.ROOM_NOT_CONNECTED, f"cannot mute {kind}: not in a room")
        if self._muted[kind] == mute:
            self._log.debug("mute_unchanged", kind=kind, muted=mute)
            return
        before = self._sending(kind)
        self._muted[kind] = mute
        await self._media_changed(kind, before)

    async def _hold_video(self, reason: VideoHold, hold: bool) -> None:
        if (reason in self._holds) == hold:
            self._log.debug("video_hold_unchanged", reason=reason, hold=hold)
            return
        before = self._sending("video")
        if hold:
            self._holds.add(reason)
        else:
            self._holds.discard(reason)
        self._log.debug("video_hold", reason=reason, hold=hold)
        await self._media_changed("video", before)

    async def _media_changed(self, kind: MediaKind, before: bool) -> None:
        """Gate the sender to the new state and, if what the room sees changed, tell it
        (once our stream is ready; before that ``_published`` does)."""
        after = self._sending(kind)
        publication = self._publication
        if publication is not None:
            publication.leg.set_sending(kind, after)
        if self._room is not None:
            self._room.set_self_muted(kind, not after)
        if before == after:
            return
        if publication is None or publication.state == "ready":
            await self._request_mute(kind, not after)

    # ------------------------------------------------------------------ subscribing

    @property
    def _rate_window_s(self) -> float:
        return self._receive.stats_interval_s or DEFAULT_WINDOW_S

    def _video_legs(self) -> int:
        return sum(1 for sub in self._subscriptions.values() if sub.video)

    def _owner_name(self, stream: StreamInfo) -> str | None:
        room = self._room
        user = None if room is None else room.users.get(stream.client_id)
        return None if user is None else user.name

    def _may_subscribe(self, room: RoomState) -> bool:
        return room.me.permissions.get("subscribe") is not False

    def _subscribe_on_join(self, room: RoomState) -> None:
        """After ``room-connected`` (a join or a rejoin): in the automatic modes the streams it
        lists, by the official client's slot rule; then the streams subscribed by hand before
        a rejoin that are still there."""
        if not self._may_subscribe(room):
            if self._receive.automatic or self._manual:
                self._log.info("not_subscribing", role=room.me.role, reason="role may not subscribe")
            return
        if self._receive.automatic:
            for stream in listed_streams_to_subscribe(room.connected):
                if stream.id in room.streams:
                    self._auto_subscribe(stream)
        for stream_id, (audio, video) in list(self._manual.items()):
            known = room.streams.get(stream_id)
            if known is None:
                del self._manual[stream_id]
                continue
            if stream_id in self._subscriptions:
                continue
            want_audio, want_video = self._receive.kinds(known, self._video_legs())
            if (want_audio and audio) or (want_video and video):
                self._start_subscription(known, want_audio and audio, want_video and video)

    def _auto_subscribe(self, stream: StreamInfo) -> None:
        room = self._room
        if (
            room is None
            or stream.id in self._subscriptions
            or stream.id in self._declined
            or stream.client_id == room.client_id
            or not self._may_subscribe(room)
            or not self._receive.wants(stream, self._owner_name(stream))
        ):
            return
        audio, video = self._receive.kinds(
            stream, self._video_legs(), audio_only=self._receive.mode == "audio"
        )
        if audio or video:
            self._start_subscription(stream, audio, video)

    def _start_subscription(self, stream: StreamInfo, audio: bool, video: bool) -> None:
        """A subscribe leg for ``stream``, brought up by its own task."""
        room, signalling = self._room, self._signalling
        if room is None or signalling is None:
            return
        wanted: dict[MediaKind, bool] = {"audio": audio, "video": video}
        kinds = [kind for kind, want in wanted.items() if want]
        legs: list[SubscribeLeg] = []

        def request_keyframe() -> None:
            """For the sink: thread-safe, a PLI to the sender."""
            if legs:
                legs[0].request_keyframe()

        info: Json = {
            "streamId": stream.id,
            "clientId": stream.client_id,
            "name": self._owner_name(stream) or stream.name,
            "audio": audio,
            "video": video,
            "stream": stream.to_payload(),
            "request_keyframe": request_keyframe,
        }
        subscription: RemoteSubscription | None = None

        def leg_failed(reason: str) -> None:
            if subscription is not None:
                subscription.leg_failed(reason)

        def broken(reason: str) -> None:
            if subscription is not None:
                self._post(_SubscriptionBroken(subscription, reason))

        leg = SubscribeLeg(
            kinds=kinds,
            sink=self._make_sink(info),
            ice_servers=room.connected.ice_servers,
            force_turn=self._room_info.force_turn,
            on_failed=leg_failed,
            tap=self._tap_receivers,
            lean=self._lean_receive,
            rate_window_s=self._rate_window_s,
            log=self._log.bind(stream_id=stream.id),
        )
        legs.append(leg)
        if not leg.tapped:
            self._warn_once(
                "subscribe_tap_unavailable",
                msg="no receive tap (aiortc's receiver internals moved, or tapping is off): "
                "received media is decoded by aiortc and only counted; sinks receive nothing",
            )
        subscription = RemoteSubscription(
            signalling=signalling,
            leg=leg,
            stream=stream,
            audio=audio,
            video=video,
            force_turn=self._room_info.force_turn,
            on_broken=broken,
            log=self._log,
        )
        self._subscriptions[stream.id] = subscription
        self._log.debug("subscribing", stream_id=stream.id, audio=audio, video=video)
        subscription.task = asyncio.create_task(
            self._run_subscription(subscription), name=f"{self._label}-subscribe-{stream.id}"
        )

    def _make_sink(self, info: Json) -> EncodedSink:
        factory = self._receive.sink_factory
        if factory is None:
            return DiscardSink()
        try:
            sink: EncodedSink = factory(info)
            if not callable(getattr(sink, "write", None)) or not callable(getattr(sink, "close", None)):
                raise TypeError(f"sink_factory returned {type(sink).__name__}, not an EncodedSink")
            return sink
        except Exception:  # the app's bug: log it, still receive (and count)
            self._log.exception("sink_factory_failed", stream_id=info["streamId"])
            return DiscardSink()

    def _warn_once(self, event: str, **fields: Any) -> None:
        if event not in self._warned:
            self._warned.add(event)
            self._log.warning(event, **fields)

    async def _run_subscription(self, subscription: RemoteSubscription) -> None:
        try:
            await subscription.run()
        except RoomError as err:
            self._post(_SubscribeFailed(subscription, err))
        except Exception as exc:  # a bug or an aiortc surprise: still a media failure
            self._log.exception("subscribe_failed", stream_id=subscription.stream_id)
            self._post(_SubscribeFailed(subscription, MediaError(f"subscribing failed: {exc!r}")))

    async def _subscribed(self, subscription: RemoteSubscription) -> None:
        """``ready``: ask for a keyframe (the first picture comes sooner), tell the app."""
        subscription.leg.request_keyframe()
        elapsed_ms = round(((subscription.ready_at or 0.0) - subscription.started_at) * 1000, 1)
        self._log.debug("stream_subscribed", stream_id=subscription.stream_id, elapsed_ms=elapsed_ms)
        await self._fire("on_subscribed_stream", subscription.payload())

    async def _subscription_ended(self, subscription: RemoteSubscription, error: RoomError) -> None:
        """A subscription that did not come up or broke: close it; report it (1160 or the
        server's code) if the stream is still in the room and we are connected."""
        if self._subscriptions.get(subscription.stream_id) is not subscription:
            return  # already closed (stream removed, left, rejoined)
        del self._subscriptions[subscription.stream_id]
        await subscription.close()
        room = self._room
        if self._phase != "connected" or room is None or subscription.stream_id not in room.streams:
            self._log.debug("subscription_ended", stream_id=subscription.stream_id, msg=error.msg)
            return
        self._log.warning(
            "subscribe_failed", stream_id=subscription.stream_id, code=error.code, msg=error.msg
        )
        await self._fire("on_room_error", error.to_payload())

    async def _subscription_broken(self, item: _SubscriptionBroken) -> None:
        subscription = item.subscription
        if subscription.leg.connection_state == "closed":
            # the media server ended it: its stream is going (onRemoveStream follows) or the
            # server let our leg go; nothing the app can act on
            if self._subscriptions.get(subscription.stream_id) is subscription:
                del self._subscriptions[subscription.stream_id]
                self._log.debug("subscription_closed_by_server", stream_id=subscription.stream_id)
                await subscription.close()
            return
        await self._subscription_ended(
            subscription, MediaError(f"stream {subscription.stream_id}: {item.reason}")
        )

    async def _close_subscription(self, stream_id: int) -> None:
        subscription = self._subscriptions.pop(stream_id, None)
        if subscription is not None:
            self._log.debug("subscription_closed", stream_id=stream_id)
            await subscription.close()

    async def _close_subscriptions(self) -> None:
        subscriptions, self._subscriptions = list(self._subscriptions.values()), {}
        results = await asyncio.gather(*(s.close() for s in subscriptions), return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                self._log.warning("subscription_close_failed", error=repr(result))

    async def _report_stats(self, every: float) -> None:
        """``on_stats`` every ``every`` seconds while in the room (skipped while reconnecting)."""
        while self._phase in IN_ROOM:
            await asyncio.sleep(every)
            if self._phase != "connected":
                continue
            try:
                payload = await self.stats()
            except Exception:  # never let monitoring end the session
                self._log.exception("stats_failed")
                continue
            await self._fire("on_stats", payload)

    # ------------------------------------------------------------------ the dispatcher

    def _post(self, item: _Item) -> None:
        if self._inbox is not None:
            self._inbox.put_nowait(item)

    async def _dispatch(self, inbox: asyncio.Queue[_Item], early: list[_Item]) -> None:
        """The one consumer of server events: state updates and callbacks, in arrival order."""
        backlog = deque(early)  # arrived before room-connected: first, in order
        while self._phase in IN_ROOM and self._inbox is inbox:
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
                await self._connection_lost(f"signalling connection closed ({reason})")
            case _LinkLost():
                if item.publication is self._publication:
                    await self._connection_lost(item.reason)
            case _MediaFailed():
                await self._media_failed(item)
            case _SubscribeFailed():
                await self._subscription_ended(item.subscription, item.error)
            case _SubscriptionBroken():
                await self._subscription_broken(item)
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
                if self._phase == "connected" and self._receive.automatic and stream.id in room.streams:
                    self._auto_subscribe(stream)  # unless the app subscribed from the callback
            case StreamRemoved(stream_id=stream_id):
                publication = self._publication
                if publication is not None and stream_id == publication.stream_id:
                    self._post(_MediaFailed(publication, MediaError("the server removed our stream")))
                    return
                room.remove_stream(stream_id)
                self._manual.pop(stream_id, None)
                self._declined.discard(stream_id)
                had_video = self._receives_video(stream_id)
                await self._close_subscription(stream_id)  # locally: no unsubscribe (PROTOCOL 5)
                self._log.debug("remote_stream_removed", stream_id=stream_id)
                await self._fire("on_stream_removed", {"id": stream_id})
                if had_video:
                    self._spawn(self._promote_video(), "promote-video")
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
        if item.subscriber:
            subscription = self._subscriptions.get(item.stream_id)
            if subscription is None:
                self._log.debug("media_message_unrouted", stream_id=item.stream_id, subscriber=True)
            elif subscription.deliver(item.msg):
                await self._subscribed(subscription)
            return
        publication = self._publication
        if publication is None or publication.stream_id is None or item.stream_id != publication.stream_id:
            self._log.debug("media_message_unrouted", stream_id=item.stream_id, subscriber=item.subscriber)
            return
        if publication.deliver(item.msg):
            await self._published(publication, item.stream_id)

    async def _bandwidth(self, event: BandwidthEvent) -> None:
        """Carry out what ``bandwidth.py`` decided: callbacks, the video cap, stopping video."""
        for action in self._bw.apply(event):
            match action:
                case Notify(callback=callback, payload=payload):
                    await self._fire(callback, payload)
                case CapVideo(kbps=kbps):
                    self._log.debug("video_cap", kbps=kbps)
                    publication = self._publication
                    if publication is not None and not publication.leg.set_video_cap(
                        None if kbps is None else kbps * 1000
                    ):
                        self._log.debug("video_cap_not_applied", kbps=kbps)
                case HoldVideo(hold=hold):
                    await self._hold_video("bandwidth", hold)

    async def _fire(self, name: CallbackName, payload: Json) -> None:
        self._log.debug("callback", callback=name)
        task = asyncio.current_task()
        if task is not None:
            self._firing.add(task)
        try:
            await invoke(getattr(self, name), payload, name=name, log=self._log)
        finally:
            if task is not None:
                self._firing.discard(task)

    # ------------------------------------------------------------------ leaving

    async def _connection_lost(self, reason: str) -> None:
        """The connection broke (socket closed, leg failed or silent). Without reconnection
        the room is left (2002); during a rejoin attempt, that attempt fails; otherwise drop
        the session, tell the app, and start reconnecting."""
        if self._phase == "reconnecting":
            attempt = self._attempt
            if attempt is not None and not attempt.done():
                attempt.set_exception(SignallingError(reason))
            return
        if self._phase != "connected":
            return
        if not self._room_info.allow_reconnect or self._envelope is None:  # no token: no rejoin
            self._log.debug("connection_lost", reason=reason, reconnect=False)
            if self._leaving is None:
                self._leaving = asyncio.ensure_future(self._finish(UNEXPECTED_DISCONNECT, leave=False))
            await asyncio.shield(self._leaving)
            return
        self._lost_at = time.monotonic()
        gone = self._path_gone()  # before the leg (and its selected pair) is closed
        self._phase = "reconnecting"
        self._inbox = None  # this dispatcher stops after this item
        await self._teardown(leave=False, retire=True)
        payload = {"cause": int(ErrorCode.NETWORK_DISCONNECTED), "msg": reason if gone is None else gone}
        if gone is None:
            self._log.debug("connection_lost", reason=reason)
            await self._fire("on_connection_lost", payload)
        else:
            self._log.debug("connection_interrupted", reason=reason, path=gone)
            await self._fire("on_connection_interrupted", payload)
        if self._phase == "reconnecting":  # the callback may have disconnected
            self._reconnector = asyncio.create_task(self._reconnect(reason), name=f"{self._label}-reconnect")

    def _path_gone(self) -> str | None:
        """Whether the local network path changed (Flutter ``onConnectionInterrupted``): the
        address our media used is gone, or no route leads to the server any more."""
        publication = self._publication
        if publication is not None:
            gone = publication.leg.path_gone()
            if gone is not None:
                return gone
        envelope = self._envelope
        if envelope is None:
            return None
        return reconnect.route_problem(urlsplit(f"//{envelope.host}").hostname or envelope.host)

    async def _reconnect(self, reason: str) -> None:
        """Rejoin attempts until one succeeds or the policy gives up (then leave, 11xx)."""
        envelope = self._envelope
        assert envelope is not None
        policy = ReconnectPolicy.from_room_info(self._room_info)
        deadline = self._lost_at + policy.budget_s
        last_error = reason
        try:
            for attempt in range(1, policy.attempts + 1):
                pause = min(policy.delay_before(attempt), deadline - time.monotonic())
                if pause > 0:
                    await asyncio.sleep(pause)
                try:
                    await reconnect.wait_for_network(
                        envelope.host, self._detection_url(), deadline, self._log
                    )
                except TimeoutError as exc:
                    raise reconnect.timed_out(policy.budget_s, str(exc) or last_error) from None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise reconnect.timed_out(policy.budget_s, last_error)
                self._log.debug("reconnect", attempt=attempt, attempts=policy.attempts)
                await self._fire(
                    "on_reconnect", {"attempt": attempt, "attempts": policy.attempts, "msg": last_error}
                )
                if self._phase != "reconnecting":
                    return  # the app disconnected
                try:
                    stream_id = await self._rejoin(envelope, attempt, min(left, policy.attempt_timeout_s))
                except RoomError as err:
                    await self._abandon_attempt()
                    if err.code in reconnect.REFUSAL_CODES:
                        raise reconnect.refused(err.code, err.msg) from None
                    last_error = f"{err.code}: {err.msg}"
                except TimeoutError:
                    await self._abandon_attempt()
                    last_error = (
                        f"attempt {attempt} took longer than {min(left, policy.attempt_timeout_s):.1f} s"
                    )
                else:
                    await self._reconnected(attempt, stream_id)
                    return
                self._log.debug("reconnect_failed", attempt=attempt, error=last_error)
                if time.monotonic() >= deadline:
                    raise reconnect.timed_out(policy.budget_s, last_error)
            raise reconnect.exhausted(policy.attempts, last_error)
        except GiveUp as give_up:
            payload = give_up.payload
        except Exception as exc:  # a bug: still leave the room, never hang in "reconnecting"
            self._log.exception("reconnect_crashed")
            payload = reconnect.exhausted(policy.attempts, f"internal error: {exc!r}").payload
        if self._phase == "reconnecting" and self._leaving is None:
            self._leaving = asyncio.ensure_future(self._finish(payload, leave=False))

    def _detection_url(self) -> str | None:
        room = self._room
        return None if room is None else room.connected.internet_detection_url

    async def _rejoin(self, envelope: TokenEnvelope, attempt: int, within: float) -> int | None:
        """One rejoin attempt: a new session announcing the old client id, then (if we
        publish) a new stream, up to ``ready``. Returns its id. Raises RoomError/TimeoutError;
        whatever it opened is left for :meth:`_abandon_attempt`."""
        room = self._room
        assert room is not None
        rejoin = Rejoin(
            attempt=attempt,
            old_client_id=self._last_client_id or room.client_id,
            room_id=room.room_id,
            role=room.me.role,
            name=room.me.name,
        )
        # the room's bandwidth verdicts were about the old connection
        self._bw = BandwidthState()
        self._holds.discard("bandwidth")
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(within):
            signalling, inbox, new_room, early = await self._open(envelope, rejoin)
            self._dispatcher = asyncio.create_task(
                self._dispatch(inbox, early), name=f"{self._label}-dispatcher"
            )
            self._subscribe_on_join(new_room)  # as the official client: re-subscribe, then publish
            if not self._may_publish(new_room):
                return None
            self._attempt = loop.create_future()
            self._start_publishing(new_room, signalling)
            return await self._attempt

    async def _abandon_attempt(self) -> None:
        """Close what a failed attempt opened (its session, its leg), in the background."""
        self._attempt = None
        self._inbox = None
        await self._stop_dispatcher()
        await self._teardown(leave=False, retire=True)

    async def _reconnected(self, attempt: int, stream_id: int | None) -> None:
        room = self._room
        assert room is not None
        self._attempt = None
        self._phase = "connected"
        elapsed_ms = round((time.monotonic() - self._lost_at) * 1000, 1)
        self._log.debug("user_reconnect_success", attempt=attempt, elapsed_ms=elapsed_ms, stream_id=stream_id)
        await self._fire(
            "on_user_reconnect_success",
            {**room.connected_payload(), "attempt": attempt, "elapsed_ms": elapsed_ms, "streamId": stream_id},
        )

    async def _finish(self, payload: Json, *, leave: bool) -> None:
        """The one way out of a room: stop the dispatcher (and reconnection), close the leg,
        say goodbye (when ``leave``), close the socket, stop our own tracks, then the
        callbacks."""
        was = self._phase
        if was in ("disconnecting", "disconnected"):
            return  # a failed join already cleaned up
        self._phase = "disconnecting"
        if was == "connecting":
            self._post(SocketClosed(reason="disconnect() called"))  # wakes a waiting join
        await self._stop_reconnector()
        await self._stop_dispatcher()
        await self._stop_stats()
        stream_id = self._published_stream_id
        await self._teardown(leave=leave)
        self._manual.clear()
        self._declined.clear()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        self._stop_owned_tracks()
        self._phase = "disconnected"
        self._log.debug("room_disconnected", cause=payload["cause"], msg=payload["msg"])
        if was in IN_ROOM:
            if stream_id is not None and leave and was == "connected":
                await self._fire(
                    "on_unpublished_stream", {"result": "0", "msg": "success", "streamId": stream_id}
                )
            await self._fire("on_room_disconnected", dict(payload))
        self._resolve_disconnected(payload)

    async def _stop_reconnector(self) -> None:
        """Cancel reconnection, unless it is the caller or inside an app callback (which may
        be awaiting this very disconnect): then it sees the phase and stops by itself."""
        task, self._reconnector = self._reconnector, None
        if task is None or task.done() or task is asyncio.current_task() or task in self._firing:
            return
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task

    async def _stop_stats(self) -> None:
        task, self._stats_task = self._stats_task, None
        if task is None or task.done() or task is asyncio.current_task() or task in self._firing:
            return  # inside on_stats (which may be awaiting this disconnect): it sees the phase
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task

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

    async def _teardown(self, *, leave: bool, retire: bool = False) -> None:
        """Close the subscribe legs, the publish leg and the socket (after ``unpublish`` and
        ``drop`` if ``leave``). Leaves the callbacks and the phase to the caller. ``retire``:
        the socket is closed in the background (a dead link may hold its close for a second)."""
        await self._close_subscriptions()
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
        if retire:
            closing = asyncio.create_task(signalling.close(), name=f"{self._label}-retire")
            self._retiring.add(closing)
            closing.add_done_callback(self._retiring.discard)
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
