"""``EnxRtc``: one participant in one room, with the method and callback names of EnableX's
Flutter plugin (``joinRoom`` -> :meth:`EnxRtc.join_room`, ``onRoomConnected`` ->
:attr:`EnxRtc.on_room_connected`, ...; the full table is ``bot.proto.names``).

This module is the facade: callback slots, the public methods, and the few sequences that
involve every collaborator (joining, losing the connection, rejoining, leaving). The phase moves
only through ``bot.proto``'s client table (:class:`~bot.proto.PhaseMachine`).

How it runs: :meth:`EnxRtc.join_room` connects, sends ``token``, waits ``room-connected``,
fires ``on_room_connected`` and returns; from then on ONE dispatcher task (``dispatch.py``)
takes the server's events in arrival order from one queue, updates the room state and fires the
callbacks, so callbacks fire in server order. Publishing (``publisher.py``) runs in its own task
(gathering and waiting for the media server), but its ``ready`` is seen by the dispatcher, and
its failures are posted to the same queue. Everything an instance owns hangs off the instance:
many live in one process.

Surviving the network (PROTOCOL.md section 8; policy in ``reconnect.py``, attempts in
``reconnector.py``): a loss is the socket closing without our asking (python-socketio's
disconnect, Engine.IO's ping timeout included), the publish leg failing, or the media server no
longer acknowledging our media (``publication.py``). The dispatcher then fires
``on_connection_lost`` (``on_connection_interrupted`` when the local network path the media used
is gone), and a reconnect task re-runs the join with a :class:`~bot.rtc.messages.Rejoin`: new
socket, ``token`` with the rejoin fields, re-publish with a new stream id (the old one is never
unpublished), ``on_user_reconnect_success``. Giving up ends the session like any other loss:
``on_room_disconnected {cause: 1165|1166|1178}``.

Receiving (PROTOCOL.md section 5; policy in ``subscriber.py``, signalling in
``subscription.py``, media in ``peer.py``): a subscription is a receive-only leg per remote
stream, started by :meth:`EnxRtc.subscribe` or, in the automatic modes, for the streams
``room-connected`` lists (the official client's slot rule) and for each ``onAddStream``. Its
encoded frames go to a sink (``bot.media.EncodedSink``, a ``DiscardSink`` unless
``sink_factory`` says otherwise): nothing is decoded unless the sink decodes. ``onRemoveStream``
closes the leg locally (no ``unsubscribe``), leaving closes them all, and a rejoin subscribes
again (the automatic choice, or the streams subscribed by hand that still exist) before
re-publishing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

import structlog
from aiortc.mediastreams import MediaStreamTrack

from bot.media import EncodedSink
from bot.proto import IN_ROOM, ErrorCode, MediaKind, Phase, TokenError, Trigger, decode_token, redact

from . import devices, talkers
from .callbacks import Callback, CallbackName, ErrorHook, Json, invoke
from .data import CHAT_MAX_BYTES, USER_DATA_MAX_BYTES, RoomData
from .errors import RoomError
from .lifecycle import NORMAL_DISCONNECT, UNEXPECTED_DISCONNECT, Lifecycle
from .moderation import ModeratorControls
from .options import LocalInfo, RoomInfo, SubscribeOptions
from .publisher import LocalPublisher
from .room_control import RoomControlApi
from .session import Context, FailureHook, report
from .stats import DEFAULT_WINDOW_S
from .stats_payload import collect
from .subscriber import RemoteSubscriptions

__all__ = ["IN_ROOM", "NORMAL_DISCONNECT", "UNEXPECTED_DISCONNECT", "EnxRtc", "Phase"]
"""``IN_ROOM`` and ``Phase`` live in ``bot.proto`` now; importable from here for one release."""

_log = structlog.get_logger(__name__)


class EnxRtc(ModeratorControls, RoomControlApi):
    """A headless EnableX participant (Flutter ``EnxRtc`` / ``EnxRoom``); moderator controls
    and the moderation callbacks come from :class:`~bot.rtc.moderation.ModeratorControls`, the
    waiting room, room clock and floor from :class:`~bot.rtc.room_control.RoomControlApi`.

    ``audio_track``/``video_track`` are aiortc tracks to publish; when None and ``local_info``
    asks for that kind, silence / a black picture is sent. Tracks passed in are never stopped
    here (they may be shared); the ones created here are stopped on disconnect.

    Receiving (see :class:`~bot.rtc.options.SubscribeOptions`): ``subscribe`` is ``"none"``
    (the default, Flutter's way: call :meth:`subscribe`), ``"all"``, ``"audio"`` (audio only)
    or a list of participant names; ``max_video_subscriptions`` caps the streams received with
    video (the rest audio only); ``sink_factory(stream_info)`` gives each subscribe leg its
    ``bot.media.EncodedSink`` (default ``DiscardSink``); ``stats_interval_s`` fires
    ``on_stats`` periodically. Bad values raise RoomError 1155.

    Owner hooks (attributes, or constructor arguments): ``on_callback_error(callback_name,
    exc)`` after a failing callback was logged (``callback_failed``); ``on_failure(where,
    exc)`` after a failure of the SDK's own background work was logged (``where``:
    ``dispatcher``, ``stats``, ``reconnector``, ``publisher``, ``subscriber``). Neither can
    stop the room: their own errors are logged.

    The work is done by collaborators with one concern each: :class:`~bot.rtc.session.RoomSession`
    (a signalling session), :class:`~bot.rtc.publisher.LocalPublisher` (our leg, mutes, holds),
    :class:`~bot.rtc.subscriber.RemoteSubscriptions` (the others' streams),
    :class:`~bot.rtc.dispatch.Dispatcher` (server order, a handler table) and
    :class:`~bot.rtc.reconnector.Reconnector` (the attempts); the phase moves through
    ``bot.proto``'s client table only.
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
    on_set_talker_count: Callback | None
    """``{result: 0, numTalkers}`` after :meth:`set_talker_count`."""
    on_get_talker_count: Callback | None
    """``{result: 0, numTalkers}`` after :meth:`get_talker_count`."""
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
    on_message_received: Callback | None
    on_user_data_received: Callback | None
    on_acknowledged_send_data: Callback | None
    """Chat and custom data (``bot.rtc.data``): what others sent us, and each send's ack."""

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
        on_callback_error: ErrorHook | None = None,
        on_failure: FailureHook | None = None,
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
        self.on_set_talker_count = None
        self.on_get_talker_count = None
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
        self.on_message_received = self.on_user_data_received = self.on_acknowledged_send_data = None
        self.on_callback_error: ErrorHook | None = on_callback_error
        self.on_failure: FailureHook | None = on_failure

        receive = SubscribeOptions.build(subscribe, max_video_subscriptions, sink_factory, stats_interval_s)
        label = label or f"rtc-{id(self):x}"
        self._ctx = ctx = Context(
            label=label, log=_log.bind(rtc=label), fire=self._fire, on_failure=self._failed
        )
        window = receive.stats_interval_s or DEFAULT_WINDOW_S
        sources: dict[MediaKind, MediaStreamTrack | None] = {"audio": audio_track, "video": video_track}
        self._publisher = LocalPublisher(ctx, sources, rate_window_s=window)
        self._subscriber = RemoteSubscriptions(ctx, receive, rate_window_s=window)
        self._life = Lifecycle(ctx, self._publisher, self._subscriber)
        self._data = RoomData(ctx)
        self._init_room_control(self._life.control)  # waiting room, duration, floor (room_control.py)
        self._advance_options: object = None

    # ------------------------------------------------------------------ public: lifecycle

    async def join_room(
        self,
        token: str,
        local_info: LocalInfo | Mapping[str, Any] | None = None,
        room_info: RoomInfo | Mapping[str, Any] | None = None,
        advance_options: object = None,
    ) -> None:
        """Join the room (Flutter ``joinRoom``). Returns once ``on_room_connected`` has fired;
        publishing, if ``local_info`` asks for audio or video, goes on in the background and
        ends in ``on_published_stream`` or ``on_room_error`` (1160). ``local_info`` and
        ``room_info`` are Flutter's dictionaries, or :class:`~bot.rtc.LocalInfo` /
        :class:`~bot.rtc.RoomInfo` instances.

        Raises RoomError after firing ``on_room_error``: the token's or the server's code for
        a bad or refused token, 1161 when the signalling server cannot be reached or answers
        late, 1155 for malformed options.
        """
        ctx = self._ctx
        if not ctx.phase.can(Trigger.JOIN):
            raise RoomError(
                ErrorCode.ALREADY_IN_STATE,
                f"join_room called while {ctx.phase.phase}: an EnxRtc joins one room, once",
            )
        ctx.phase.step(Trigger.JOIN)
        try:
            ctx.local = local_info if isinstance(local_info, LocalInfo) else LocalInfo.from_dict(local_info)
            ctx.room_info = room_info if isinstance(room_info, RoomInfo) else RoomInfo.from_dict(room_info)
            self._advance_options = advance_options
            self._publisher.media.muted = {"audio": ctx.local.audio_muted, "video": ctx.local.video_muted}
            try:
                envelope = decode_token(token)
                ctx.envelope = envelope
                ctx.log = ctx.log.bind(room=envelope.room_id)
                envelope.check_expiry(time.time())
            except TokenError as exc:
                raise RoomError(exc.code, str(exc)) from None
            ctx.log.debug("join_started", host=envelope.host, token=redact(envelope.text))
            await self._life.join(envelope)
        except RoomError as err:
            await self._life.join_failed(err)
            raise
        except BaseException:
            await self._life.join_failed(None)
            raise

    async def disconnect(self) -> None:
        """Leave the room (Flutter ``disconnect``). Idempotent; safe from inside a callback.

        Fires ``on_unpublished_stream`` (if we published) then ``on_room_disconnected``
        ``{"cause": 2006, "msg": "normal-disconnect"}``.
        """
        await self._life.leave(NORMAL_DISCONNECT, leave=True)

    aclose = disconnect

    async def wait_disconnected(self) -> Json:
        """Wait until the room is left, for whatever reason; returns the
        ``on_room_disconnected`` payload (or ``{cause: code, msg}`` of a failed join)."""
        return await self._life.wait_disconnected()

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
        (``user-audio-muted`` / ``-unmuted``); ``on_audio_event`` acknowledges it. RoomError
        1171 when not connected, 1168 to unmute while a moderator hard-mutes it."""
        await self._publisher.mute("audio", mute)

    async def mute_self_video(self, mute: bool) -> None:
        """As :meth:`mute_self_audio`, for video."""
        await self._publisher.mute("video", mute)

    async def switch_media(
        self, audio_track: MediaStreamTrack | None = None, video_track: MediaStreamTrack | None = None
    ) -> list[MediaStreamTrack]:
        """Publish other tracks on the same stream without renegotiating (a bot changing its
        media file; not in EnableX's SDKs, whose devices switch with ``switchMediaDevice``).
        Pre-encoded tracks must carry the codecs negotiated (VP8/Opus); video resumes at the
        new source's keyframe. Returns the replaced tracks (the caller's to stop). RoomError
        1171 when not publishing; ``bot.rtc.MediaError`` for a track it cannot send."""
        tracks: dict[MediaKind, MediaStreamTrack | None] = {"audio": audio_track, "video": video_track}
        replaced = []
        for kind, track in tracks.items():
            if track is not None and (old := self._publisher.switch_source(kind, track)) is not None:
                replaced.append(old)
        return replaced

    async def set_audio_only_mode(self, enable: bool) -> None:
        """Stop (or resume) sending video while staying published and keeping audio (Flutter
        ``setAudioOnlyMode``); the room is told ``user-video-muted``/``-unmuted``. Independent
        of :meth:`mute_self_video`: video flows only when neither holds it. RoomError 1171
        when not in a room."""
        if self._ctx.phase.phase not in IN_ROOM or self._ctx.room is None:
            raise RoomError(ErrorCode.ROOM_NOT_CONNECTED, "cannot set audio-only mode: not in a room")
        await self._publisher.hold_video("audio_only_mode", enable)

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
        await self._subscriber.subscribe(stream_id, audio, video)

    async def unsubscribe(self, stream_id: int | str) -> None:
        """Stop receiving a remote stream: its leg closes, the room is told (``unsubscribe``),
        and neither the automatic modes nor a rejoin subscribe to it again (until it is
        published anew, with a new id, or :meth:`subscribe` asks). RoomError: 1171 not in a
        room, 1159 not subscribed to it (or the room refused)."""
        await self._subscriber.unsubscribe(stream_id)

    @property
    def subscribed_stream_ids(self) -> list[int]:
        """The remote streams we have a subscription to (ready or still coming up)."""
        return list(self._subscriber.legs)

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
        return await collect(self._publisher.publication, self._subscriber.legs.values(), self._ctx.log)

    def get_devices(self) -> list[str]:
        """Audio output devices (Flutter ``getDevices``): headless, so ``NONE`` (received audio
        is discarded), and ``FILE`` when the ``sink_factory`` records (see ``bot.rtc.devices``)."""
        output = devices.output_of(self._subscriber.options.sink_factory)
        return list(devices.AVAILABLE if output is None else output.devices)

    def get_selected_device(self) -> str:
        """Where received audio goes now (Flutter ``getSelectedDevice``)."""
        output = devices.output_of(self._subscriber.options.sink_factory)
        return devices.DEFAULT if output is None else output.selected

    def switch_media_device(self, device: str) -> bool:
        """Send received audio to ``device`` (Flutter ``switchMediaDevice``), one of
        :meth:`get_devices`, from now on (legs already up included). Returns True when it is
        selected; an unknown device is an error: logged, nothing changes, False."""
        output = devices.output_of(self._subscriber.options.sink_factory)
        if output is None:
            ok = device == devices.DEFAULT
        else:
            ok = device in output.devices and output.select(device)
        if not ok:
            self._ctx.log.error("switch_media_device_failed", device=device, devices=self.get_devices())
        return ok

    async def send_message(
        self, message: str, broadcast: bool = True, recipients: Iterable[str] = ()
    ) -> Json:
        """Chat (Flutter ``sendMessage``) to everyone else, or to ``recipients`` (client ids):
        returns the ack; RoomError 1155/1171/1195 refused here, or the room's code."""
        return await self._data.send("chat", message, broadcast, recipients, CHAT_MAX_BYTES)

    async def send_user_data(
        self,
        data: object,
        broadcast: bool = True,
        recipients: Iterable[str] = (),
        *,
        max_bytes: int = USER_DATA_MAX_BYTES,
    ) -> Json:
        """Custom data (Flutter ``sendUserData``), as :meth:`send_message`; ``max_bytes`` up to 2 MB."""
        return await self._data.send("user_data", data, broadcast, recipients, max_bytes)

    # ------------------------------------------------------------------ public: getters

    def get_user_list(self) -> list[Json]:
        """Everyone in the room, ourselves included, as wire-named dicts."""
        return [] if self._ctx.room is None else self._ctx.room.user_list()

    @property
    def user_count(self) -> int:
        """``len(get_user_list())`` without building the list (a join in a big room asks)."""
        return 0 if self._ctx.room is None else len(self._ctx.room.users)

    def who_am_i(self) -> Json:
        return {} if self._ctx.room is None else self._ctx.room.me.to_payload()

    def get_room_id(self) -> str | None:
        return self.room_id

    def get_client_id(self) -> str | None:
        return self.client_id

    def get_client_name(self) -> str | None:
        if self._ctx.room is not None:
            return self._ctx.room.me.name
        return None if self._ctx.envelope is None else self._ctx.envelope.name

    def get_role(self) -> str | None:
        if self._ctx.room is not None:
            return self._ctx.room.me.role
        return None if self._ctx.envelope is None else self._ctx.envelope.role

    def get_max_talkers(self) -> int | None:
        return None if self._ctx.room is None else self._ctx.room.max_talkers

    async def set_talker_count(self, count: int) -> int:
        """Flutter ``setTalkerCount``: at most ``count`` talkers in our active-talker list
        (0 to :meth:`get_max_talkers`; 0: none, audio only); the count the room set."""
        return await talkers.set_talker_count(self._ctx, count)

    async def get_talker_count(self) -> int:
        """Flutter ``getTalkerCount``: how many talkers our list holds at most."""
        return await talkers.get_talker_count(self._ctx)

    async def pin_users(self, client_ids: list[str]) -> list[str]:
        """Flutter ``pinUsers`` (moderators): these head every list; the room's pins after it."""
        return await talkers.pin_users(self._ctx, client_ids, pin=True)

    async def unpin_users(self, client_ids: list[str]) -> list[str]:
        """Flutter ``unpinUsers`` (moderators); the room's pins after it."""
        return await talkers.pin_users(self._ctx, client_ids, pin=False)

    @property
    def room_id(self) -> str | None:
        if self._ctx.room is not None:
            return self._ctx.room.room_id
        return None if self._ctx.envelope is None else self._ctx.envelope.room_id

    @property
    def client_id(self) -> str | None:
        return None if self._ctx.room is None else self._ctx.room.client_id

    @property
    def published_stream_id(self) -> int | None:
        """Our stream's id once ``on_published_stream`` fired."""
        return self._publisher.stream_id

    @property
    def phase(self) -> Phase:
        return self._ctx.phase.phase

    def __repr__(self) -> str:
        envelope = self._ctx.envelope
        token = "<none>" if envelope is None else redact(envelope.text)
        return (
            f"EnxRtc(label={self._ctx.label!r}, phase={str(self.phase)!r}, room_id={self.room_id!r}, "
            f"client_id={self.client_id!r}, name={self.get_client_name()!r}, token={token})"
        )

    async def _fire(self, name: CallbackName, payload: Json) -> None:
        self._ctx.log.debug("callback", callback=name)
        task = asyncio.current_task()
        if task is not None:
            self._ctx.firing.add(task)
        try:
            callback = getattr(self, name)
            await invoke(callback, payload, name=name, log=self._ctx.log, on_error=self.on_callback_error)
        finally:
            if task is not None:
                self._ctx.firing.discard(task)

    def _failed(self, where: str, exc: BaseException) -> None:
        report(self.on_failure, where, exc, self._ctx.log)
