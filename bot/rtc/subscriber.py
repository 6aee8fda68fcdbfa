"""The others' streams we receive (Remote, in the Local/Remote split of livekit-rtc).

:class:`RemoteSubscriptions` keeps one :class:`~bot.rtc.subscription.RemoteSubscription` per
remote stream and the policy around them: streams subscribed by hand (kept across a rejoin),
streams given up by ``unsubscribe`` (left alone by the automatic modes), the automatic modes
themselves, ``max_video_subscriptions`` with the promotion to video when a slot frees up, and the
sink factory. The decisions that need no network are the module functions :func:`auto_kinds`
and :func:`promotion`, tested alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from typing import Any, Protocol

from bot.media import DiscardSink, EncodedSink
from bot.proto import ErrorCode, MediaEngineConnecting, MediaKind, StreamInfo, UnsubscribeRequest

from .callbacks import Json
from .errors import MediaError, RoomError
from .legs import SubscribeLeg
from .options import SubscribeOptions, listed_streams_to_subscribe
from .session import Context, SubscribeFailed, SubscriptionBroken
from .state import RoomState
from .subscription import RemoteSubscription
from .talkers import TalkerFollower


class _Receiving(Protocol):
    @property
    def video(self) -> bool: ...


def video_legs(legs: Collection[_Receiving]) -> int:
    return sum(1 for leg in legs if leg.video)


def auto_kinds(
    options: SubscribeOptions,
    stream: StreamInfo,
    *,
    own_client_id: str,
    owner_name: str | None,
    video_legs: int,
    taken: Collection[int],
) -> tuple[bool, bool] | None:
    """What an automatic mode receives of ``stream`` (``(audio, video)``), or None: already
    subscribed or declined (``taken``), our own, not wanted, or nothing left to receive."""
    if stream.id in taken or stream.client_id == own_client_id or not options.wants(stream, owner_name):
        return None
    audio, video = options.kinds(stream, video_legs, audio_only=options.mode == "audio")
    return (audio, video) if audio or video else None


def promotion(
    options: SubscribeOptions,
    legs: Mapping[int, _Receiving],
    streams: Mapping[int, StreamInfo],
    manual: Collection[int],
) -> tuple[StreamInfo, bool, bool] | None:
    """A video slot freed up: the first automatic subscription received audio only for want
    of one (its stream has video), with what to receive of it now; None if there is none or
    still no slot."""
    if options.max_video_subscriptions is None or options.mode in ("audio", "talkers"):
        return None
    for sid, leg in legs.items():
        stream = streams.get(sid)
        if stream is None or leg.video or not stream.video or sid in manual:
            continue
        audio, video = options.kinds(stream, video_legs(legs.values()))
        return (stream, audio, video) if video else None
    return None


class RemoteSubscriptions:
    """The subscribe legs of an :class:`~bot.rtc.EnxRtc`, by stream id (``legs``)."""

    def __init__(self, ctx: Context, options: SubscribeOptions, *, rate_window_s: float) -> None:
        self._ctx = ctx
        self.options = options
        self._rate_window_s = rate_window_s
        self.legs: dict[int, RemoteSubscription] = {}
        self.manual: dict[int, tuple[bool, bool]] = {}
        """Streams subscribed by :meth:`subscribe` (and the kinds asked), for a rejoin."""
        self.declined: set[int] = set()
        """Streams given up by :meth:`unsubscribe`: the automatic modes leave them alone."""
        self.tap = True  # tests turn it off to exercise the fallback
        self.lean = True  # tests and benchmarks turn it off to compare
        self._warned: set[str] = set()
        self.talkers = (
            TalkerFollower(ctx, self, options.max_video_subscriptions) if options.mode == "talkers" else None
        )
        """``subscribe="talkers"``: video for the active talkers, audio for the rest."""

    # ------------------------------------------------------------------ the app's requests

    def _in_room(self, what: str) -> RoomState:
        ctx = self._ctx
        if not ctx.connected or ctx.room is None or ctx.session is None:
            raise RoomError(ErrorCode.ROOM_NOT_CONNECTED, f"{what}: not in a room")
        return ctx.room

    async def subscribe(self, stream_id: int | str, audio: bool | None, video: bool | None) -> None:
        """See :meth:`~bot.rtc.EnxRtc.subscribe`."""
        room = self._in_room(f"cannot subscribe to {stream_id}")
        sid = _stream_id(stream_id)
        stream = room.streams.get(sid)
        if stream is None:
            raise RoomError(ErrorCode.STREAM_NOT_FOUND, f"no stream {sid} in the room to subscribe to")
        if sid in self.legs:
            raise RoomError(ErrorCode.ALREADY_IN_STATE, f"already subscribed to stream {sid}")
        if not _may_subscribe(room):
            raise RoomError(ErrorCode.NOT_PERMITTED, f"role {room.me.role!r} may not subscribe")
        want_audio, want_video = self.options.kinds(stream, video_legs(self.legs.values()))
        want_audio = want_audio and audio is not False
        want_video = want_video and video is not False
        if not (want_audio or want_video):
            raise RoomError(
                ErrorCode.INVALID_PARAMETERS,
                f"nothing to receive of stream {sid} (audio={stream.audio}, video={stream.video}, "
                f"asked audio={audio}, video={video})",
            )
        self.manual[sid] = (audio is not False, video is not False)
        self.declined.discard(sid)
        self._start(stream, want_audio, want_video)

    async def unsubscribe(self, stream_id: int | str) -> None:
        """See :meth:`~bot.rtc.EnxRtc.unsubscribe`."""
        self._in_room(f"cannot unsubscribe {stream_id}")
        session = self._ctx.session
        assert session is not None
        sid = _stream_id(stream_id)
        if sid not in self.legs:
            raise RoomError(ErrorCode.STREAM_NOT_FOUND, f"not subscribed to stream {sid}")
        self.manual.pop(sid, None)
        self.declined.add(sid)
        had_video = self.legs[sid].video
        await self.close(sid)
        ack = await session.signalling.request(UnsubscribeRequest(stream_id=sid))
        if not ack.ok:
            raise RoomError(ack.result or ErrorCode.STREAM_NOT_FOUND, f"unsubscribe {sid}: {ack.msg}")
        self._ctx.log.info("unsubscribed_stream", stream_id=sid)
        if had_video:
            await self.promote_video()

    async def promote_video(self) -> None:
        """A video leg ended: under ``max_video_subscriptions``, re-subscribe the first stream
        received audio only for want of a slot, with video (``unsubscribe``, then
        ``subscribe``: a short audio gap)."""
        ctx = self._ctx
        room, session = ctx.room, ctx.session
        if not ctx.connected or room is None or session is None:
            return
        chosen = promotion(self.options, self.legs, room.streams, self.manual)
        if chosen is None:
            return
        stream, audio, video = chosen
        if await self.resubscribe(stream, audio, video, failed="video_promotion_failed"):
            ctx.log.info("video_promoted", stream_id=stream.id)

    async def resubscribe(
        self, stream: StreamInfo, audio: bool, video: bool, *, failed: str = "resubscribe_failed"
    ) -> bool:
        """Receive ``stream`` again with other kinds: close our leg, ``unsubscribe``, then a
        new leg (a short gap); False (logged as ``failed``) if the room refused."""
        ctx, session, sid = self._ctx, self._ctx.session, stream.id
        if session is None:
            return False
        await self.close(sid)
        try:
            ack = await session.signalling.request(UnsubscribeRequest(stream_id=sid))
        except RoomError as err:  # the socket went: a rejoin subscribes afresh
            ctx.log.info(failed, stream_id=sid, code=err.code, msg=err.msg)
            return False
        if not ack.ok:
            ctx.log.warning(failed, stream_id=sid, code=ack.result, msg=ack.msg)
            return False
        self._start(stream, audio, video)
        return True

    def start_auto(self, stream: StreamInfo, audio: bool, video: bool) -> None:
        """A leg for ``stream`` chosen by an automatic mode (the talker follower)."""
        self._start(stream, audio, video)

    def active_talkers(self, active_list: list[Any]) -> None:
        """``active-talkers-updated``: the talker follower (if any) follows it."""
        if self.talkers is not None:
            self.talkers.updated(active_list)

    # ------------------------------------------------------------------ the room's events

    def on_joined(self, room: RoomState) -> None:
        """After ``room-connected`` (a join or a rejoin): in the automatic modes the streams it
        lists, by the official client's slot rule; then the streams subscribed by hand before
        a rejoin that are still there."""
        if not _may_subscribe(room):
            if self.options.automatic or self.manual:
                self._ctx.log.info("not_subscribing", role=room.me.role, reason="role may not subscribe")
            return
        if self.options.automatic:
            for stream in listed_streams_to_subscribe(room.connected):
                if stream.id in room.streams:
                    self.auto_subscribe(stream)
        for stream_id, (audio, video) in list(self.manual.items()):
            known = room.streams.get(stream_id)
            if known is None:
                del self.manual[stream_id]
                continue
            if stream_id in self.legs:
                continue
            want_audio, want_video = self.options.kinds(known, video_legs(self.legs.values()))
            if (want_audio and audio) or (want_video and video):
                self._start(known, want_audio and audio, want_video and video)

    def auto_subscribe(self, stream: StreamInfo) -> None:
        room = self._ctx.room
        if room is None or not _may_subscribe(room):
            return
        kinds = auto_kinds(
            self.options,
            stream,
            own_client_id=room.client_id,
            owner_name=self._owner_name(stream),
            video_legs=video_legs(self.legs.values()),
            taken=self.legs.keys() | self.declined,
        )
        if kinds is not None and self.talkers is not None:
            kinds = self.talkers.kinds(stream)
        if kinds is not None and any(kinds):
            self._start(stream, *kinds)

    def stream_added(self, stream: StreamInfo) -> None:
        """``onAddStream`` (after ``on_stream_added``, which may have subscribed already)."""
        room = self._ctx.room
        if self._ctx.connected and self.options.automatic and room is not None and stream.id in room.streams:
            self.auto_subscribe(stream)

    async def stream_removed(self, stream_id: int) -> bool:
        """``onRemoveStream``: close our leg locally (no ``unsubscribe``, PROTOCOL 5); whether it
        received video (a slot is free)."""
        self.manual.pop(stream_id, None)
        self.declined.discard(stream_id)
        subscription = self.legs.get(stream_id)
        had_video = subscription is not None and subscription.video
        await self.close(stream_id)
        return had_video

    async def deliver(self, item: MediaEngineConnecting) -> None:
        subscription = self.legs.get(item.stream_id)
        if subscription is None:
            self._ctx.log.debug("media_message_unrouted", stream_id=item.stream_id, subscriber=True)
        elif subscription.deliver(item.msg):
            await self._subscribed(subscription)

    async def failed(self, item: SubscribeFailed) -> None:
        await self._ended(item.subscription, item.error)

    async def broken(self, item: SubscriptionBroken) -> None:
        subscription = item.subscription
        if subscription.leg.connection_state == "closed":
            # the media server ended it: its stream is going (onRemoveStream follows) or the
            # server let our leg go; nothing the app can act on
            if self.legs.get(subscription.stream_id) is subscription:
                del self.legs[subscription.stream_id]
                self._ctx.log.debug("subscription_closed_by_server", stream_id=subscription.stream_id)
                await subscription.aclose()
            return
        await self._ended(subscription, MediaError(f"stream {subscription.stream_id}: {item.reason}"))

    # ------------------------------------------------------------------ legs

    def _owner_name(self, stream: StreamInfo) -> str | None:
        room = self._ctx.room
        user = None if room is None else room.users.get(stream.client_id)
        return None if user is None else user.name

    def _start(self, stream: StreamInfo, audio: bool, video: bool) -> None:
        """A subscribe leg for ``stream``, brought up by its own task."""
        ctx = self._ctx
        room, session = ctx.room, ctx.session
        if room is None or session is None:
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
                ctx.post(SubscriptionBroken(subscription, reason))

        leg = SubscribeLeg(
            kinds=kinds,
            sink=self._make_sink(info),
            ice_servers=room.connected.ice_servers,
            force_turn=ctx.room_info.force_turn,
            on_failed=leg_failed,
            tap=self.tap,
            lean=self.lean,
            rate_window_s=self._rate_window_s,
            log=ctx.log.bind(stream_id=stream.id),
        )
        legs.append(leg)
        if not leg.tapped:
            self._warn_once(
                "subscribe_tap_unavailable",
                msg="no receive tap (aiortc's receiver internals moved, or tapping is off): "
                "received media is decoded by aiortc and only counted; sinks receive nothing",
            )
        subscription = RemoteSubscription(
            signalling=session.signalling,
            leg=leg,
            stream=stream,
            audio=audio,
            video=video,
            force_turn=ctx.room_info.force_turn,
            on_broken=broken,
            log=ctx.log,
        )
        self.legs[stream.id] = subscription
        ctx.log.debug("subscribing", stream_id=stream.id, audio=audio, video=video)
        subscription.task = asyncio.create_task(
            self._run(subscription), name=f"{ctx.label}-subscribe-{stream.id}"
        )

    def _make_sink(self, info: Json) -> EncodedSink:
        factory = self.options.sink_factory
        if factory is None:
            return DiscardSink()
        try:
            sink: EncodedSink = factory(info)
            if not callable(getattr(sink, "write", None)) or not callable(getattr(sink, "close", None)):
                raise TypeError(f"sink_factory returned {type(sink).__name__}, not an EncodedSink")
            return sink
        except Exception:  # the app's bug: log it, still receive (and count)
            self._ctx.log.exception("sink_factory_failed", stream_id=info["streamId"])
            return DiscardSink()

    def _warn_once(self, event: str, **fields: Any) -> None:
        if event not in self._warned:
            self._warned.add(event)
            self._ctx.log.warning(event, **fields)

    async def _run(self, subscription: RemoteSubscription) -> None:
        ctx = self._ctx
        try:
            await subscription.run()
        except RoomError as err:
            ctx.post(SubscribeFailed(subscription, err))
        except Exception as exc:  # a bug or an aiortc surprise: still a media failure
            ctx.log.exception("subscribe_failed", stream_id=subscription.stream_id)
            ctx.failed("subscriber", exc)
            ctx.post(SubscribeFailed(subscription, MediaError(f"subscribing failed: {exc!r}")))

    async def _subscribed(self, subscription: RemoteSubscription) -> None:
        """``ready``: ask for a keyframe (the first picture comes sooner), tell the app."""
        subscription.leg.request_keyframe()
        elapsed_ms = round(((subscription.ready_at or 0.0) - subscription.started_at) * 1000, 1)
        self._ctx.log.debug("stream_subscribed", stream_id=subscription.stream_id, elapsed_ms=elapsed_ms)
        await self._ctx.fire("on_subscribed_stream", subscription.payload())

    async def _ended(self, subscription: RemoteSubscription, error: RoomError) -> None:
        """A subscription that did not come up or broke: close it; report it (1160 or the
        server's code) if the stream is still in the room and we are connected."""
        ctx = self._ctx
        if self.legs.get(subscription.stream_id) is not subscription:
            return  # already closed (stream removed, left, rejoined)
        del self.legs[subscription.stream_id]
        await subscription.aclose()
        room = ctx.room
        if not ctx.connected or room is None or subscription.stream_id not in room.streams:
            ctx.log.debug("subscription_ended", stream_id=subscription.stream_id, msg=error.msg)
            return
        ctx.log.warning("subscribe_failed", stream_id=subscription.stream_id, code=error.code, msg=error.msg)
        await ctx.fire("on_room_error", error.to_payload())

    async def close(self, stream_id: int) -> None:
        subscription = self.legs.pop(stream_id, None)
        if subscription is not None:
            self._ctx.log.debug("subscription_closed", stream_id=stream_id)
            await subscription.aclose()

    async def aclose(self) -> None:
        """Close every leg (leaving, or the connection lost: a rejoin subscribes again)."""
        subscriptions, self.legs = list(self.legs.values()), {}
        results = await asyncio.gather(*(s.aclose() for s in subscriptions), return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                self._ctx.log.warning("subscription_close_failed", error=repr(result))

    def forget(self) -> None:
        """Leaving for good: nothing is kept for a rejoin."""
        self.manual.clear()
        self.declined.clear()


def _may_subscribe(room: RoomState) -> bool:
    return room.me.permissions.get("subscribe") is not False


def _stream_id(stream_id: int | str) -> int:
    try:
        return int(stream_id)
    except (TypeError, ValueError):
        raise RoomError(ErrorCode.INVALID_PARAMETERS, f"stream id {stream_id!r} is not a number") from None
