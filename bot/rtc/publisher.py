"""Our side of the room: the publish leg's lifecycle and the state of our media (Local, in the
Local/Remote split of livekit-rtc).

:class:`MediaState` is what the app and the room asked of our media (mutes, video holds) and
so what flows. :class:`LocalPublisher` starts a :class:`~bot.rtc.publication.LocalPublication`
after ``room-connected`` (and after each rejoin), reports ``ready`` (``on_published_stream``, or
to the rejoin awaiting it), tells the room our mute state, carries out the room's bandwidth
verdicts on our video, and drops a leg that failed (1160).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from contextlib import suppress
from dataclasses import replace
from typing import Any, Literal

from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack, VideoStreamTrack

from bot.proto import (
    IN_ROOM,
    Ack,
    BandwidthEvent,
    ErrorCode,
    MediaKind,
    SelfMuteRequest,
    UnpublishRequest,
)

from .bandwidth import BandwidthState, CapVideo, HoldVideo, Notify
from .errors import MediaError, RoomError
from .lecture import lecture_listener
from .legs import PublishLeg
from .messages import publish_request
from .publication import LocalPublication
from .session import Context, LinkLost, MediaFailed, RoomSession
from .state import RoomState

NO_PUBLISH_ROLES = frozenset({"viewer", "audience"})

VideoHold = Literal["audio_only_mode", "bandwidth"]


class MediaState:
    """Mutes (the app's, per kind), a moderator's hard mutes (per kind, by scope: ``room``,
    ``user``) and video holds (audio-only mode, the room's bandwidth verdict): a kind flows
    when neither muted nor hard-muted and, for video, not held."""

    def __init__(self) -> None:
        self.muted: dict[MediaKind, bool] = {"audio": False, "video": False}
        self.hard: dict[MediaKind, set[str]] = {"audio": set(), "video": set()}
        self.holds: set[VideoHold] = set()

    def sending(self, kind: MediaKind) -> bool:
        if self.muted[kind] or self.hard[kind]:
            return False
        return kind != "video" or not self.holds


class LocalPublisher:
    """The publish leg of an :class:`~bot.rtc.EnxRtc`. ``sources``: the app's tracks (None:
    silence / black, made here and stopped by :meth:`stop_owned_tracks`)."""

    def __init__(
        self, ctx: Context, sources: dict[MediaKind, MediaStreamTrack | None], *, rate_window_s: float
    ) -> None:
        self._ctx = ctx
        self._sources = sources
        self._owned: dict[MediaKind, MediaStreamTrack] = {}
        self._rate_window_s = rate_window_s
        self.media = MediaState()
        self.bw = BandwidthState()
        self.publication: LocalPublication | None = None
        self._task: asyncio.Task[None] | None = None
        self.stream_id: int | None = None
        """Our stream's id once ``on_published_stream`` fired."""
        self.floor_granted = False
        """Lecture mode: a moderator granted us the floor (``room_control.py``)."""
        self._ready: asyncio.Future[int] | None = None
        """A rejoin waiting for the new stream's ``ready`` (instead of ``on_published_stream``)."""

    # ------------------------------------------------------------------ starting

    def may_publish(self, room: RoomState) -> bool:
        local, room_info = self._ctx.local, self._ctx.room_info
        if not (local.audio or (local.video and not room_info.audio_only)):
            return False
        if room.me.role in NO_PUBLISH_ROLES or room.me.permissions.get("publish") is False:
            self._ctx.log.info("not_publishing", role=room.me.role, reason="role may not publish")
            return False
        if not self.floor_granted and lecture_listener(room):
            self._ctx.log.info("not_publishing", role=room.me.role, reason="lecture mode: no floor yet")
            return False
        return True

    def _track(self, kind: MediaKind) -> MediaStreamTrack:
        source = self._sources[kind]
        if source is not None:
            return source
        if kind not in self._owned:
            self._owned[kind] = AudioStreamTrack() if kind == "audio" else VideoStreamTrack()
        return self._owned[kind]

    def start(self, session: RoomSession, room: RoomState) -> None:
        """Start publishing in the background (``on_published_stream`` at ``ready``)."""
        ctx, local, room_info = self._ctx, self._ctx.local, self._ctx.room_info
        wanted: dict[MediaKind, bool] = {
            "audio": local.audio,
            "video": local.video and not room_info.audio_only,
        }
        kinds = [kind for kind, want in wanted.items() if want]
        publication: LocalPublication | None = None

        def leg_failed(reason: str) -> None:
            if publication is not None:
                publication.leg_failed(reason)

        def broken(reason: str) -> None:
            if publication is None:
                return
            if room_info.allow_reconnect:
                ctx.post(LinkLost(publication, reason))
            else:
                ctx.post(MediaFailed(publication, MediaError(reason)))

        sending = self.media.sending
        leg = PublishLeg(
            tracks={k: self._track(k) for k in kinds},
            ice_servers=room.connected.ice_servers,
            force_turn=room_info.force_turn,
            muted={k: not sending(k) for k in kinds},
            on_failed=leg_failed,
            rate_window_s=self._rate_window_s,
            log=ctx.log,
        )
        if self.bw.cap_kbps is not None:
            leg.set_video_cap(self.bw.cap_kbps * 1000)
        local = replace(local, audio_muted=not sending("audio"), video_muted=not sending("video"))
        publication = LocalPublication(
            signalling=session.signalling,
            leg=leg,
            request=publish_request(local, room.connected, video=not room_info.audio_only),
            force_turn=room_info.force_turn,
            on_broken=broken,
            log=ctx.log,
        )
        self.publication = publication
        self._task = asyncio.create_task(self._run(publication), name=f"{ctx.label}-publish")

    def start_awaited(self, session: RoomSession, room: RoomState) -> asyncio.Future[int]:
        """As :meth:`start`, for a rejoin: ``ready`` resolves the returned future (with the
        stream id) instead of firing ``on_published_stream``; a failure fails it."""
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._ready = ready
        self.start(session, room)
        return ready

    async def _run(self, publication: LocalPublication) -> None:
        """Publish, then (when reconnection is allowed) watch that the media server still
        hears us, for as long as the leg is ready."""
        ctx = self._ctx
        try:
            await publication.run()
        except RoomError as err:
            ctx.post(MediaFailed(publication, err))
            return
        except Exception as exc:  # a bug or an aiortc surprise: still a media failure
            ctx.log.exception("publish_failed")
            ctx.failed("publisher", exc)
            ctx.post(MediaFailed(publication, MediaError(f"publishing failed: {exc!r}")))
            return
        if ctx.room_info.allow_reconnect:
            await publication.watch()

    def _awaited(self) -> asyncio.Future[int] | None:
        """The rejoin's future, while a rejoin waits for it."""
        ready = self._ready
        if ready is None or ready.done() or not self._ctx.reconnecting:
            return None
        return ready

    # ------------------------------------------------------------------ from the dispatcher

    def owns(self, stream_id: int) -> bool:
        return self.publication is not None and stream_id == self.publication.stream_id

    async def deliver(self, stream_id: int, msg: Any) -> None:
        """A ``media_engine_connecting`` message for a publish leg."""
        publication = self.publication
        if publication is None or publication.stream_id is None or stream_id != publication.stream_id:
            self._ctx.log.debug("media_message_unrouted", stream_id=stream_id, subscriber=False)
            return
        if publication.deliver(msg):
            await self._published(publication, stream_id)

    async def _published(self, publication: LocalPublication, stream_id: int) -> None:
        """``ready``: tell the room our mute state (as the official client does), then the app
        (a rejoin's re-publish is reported by ``on_user_reconnect_success`` instead)."""
        ctx = self._ctx
        self.stream_id = stream_id
        ctx.log.debug("stream_published", stream_id=stream_id)
        changes: list[tuple[MediaKind, bool]] = []
        for kind in publication.leg.kinds:
            at_publish = publication.request.mute_audio if kind == "audio" else publication.request.mute_video
            muted = not self.media.sending(kind)
            if muted or at_publish:
                changes.append((kind, muted))
        if changes:
            ctx.spawn(self._send_mutes(changes), "mute-on-join")
        if ctx.reconnecting and self._ready is not None:
            ready = self._awaited()
            if ready is not None:
                ready.set_result(stream_id)
            return
        await ctx.fire("on_published_stream", {"result": "0", "msg": "success", "streamId": stream_id})

    def stream_removed_by_server(self) -> None:
        """``onRemoveStream`` for our own stream: a media failure."""
        if self.publication is not None:
            self._ctx.post(MediaFailed(self.publication, MediaError("the server removed our stream")))

    async def media_failed(self, item: MediaFailed) -> None:
        """A publish leg that did not come up or broke: drop it, tell the app (1160). During a
        rejoin attempt it fails the attempt instead (the next one publishes again)."""
        ctx, publication = self._ctx, item.publication
        if publication is not self.publication:
            return  # already replaced or torn down
        if ctx.reconnecting and self._ready is not None:
            ready = self._awaited()
            if ready is not None:
                ready.set_exception(item.error)
            return
        self.publication = None
        ctx.log.warning("media_failed", code=item.error.code, msg=item.error.msg)
        stream_id = publication.stream_id
        await publication.aclose()
        if stream_id is not None and ctx.session is not None:
            signalling = ctx.session.signalling
            ctx.spawn(_quietly(signalling.request(UnpublishRequest(stream_id=stream_id))), "unpublish")
        if self.stream_id == stream_id:
            self.stream_id = None
        await ctx.fire("on_room_error", item.error.to_payload())

    async def bandwidth(self, event: BandwidthEvent) -> None:
        """Carry out what ``bandwidth.py`` decided: callbacks, the video cap, stopping video."""
        for action in self.bw.apply(event):
            match action:
                case Notify(callback=callback, payload=payload):
                    await self._ctx.fire(callback, payload)
                case CapVideo(kbps=kbps):
                    self._ctx.log.debug("video_cap", kbps=kbps)
                    publication = self.publication
                    if publication is not None and not publication.leg.set_video_cap(
                        None if kbps is None else kbps * 1000
                    ):
                        self._ctx.log.debug("video_cap_not_applied", kbps=kbps)
                case HoldVideo(hold=hold):
                    await self.hold_video("bandwidth", hold)

    def switch_source(self, kind: MediaKind, track: MediaStreamTrack) -> MediaStreamTrack | None:
        """Publish ``track`` for ``kind`` from now on (and after a reconnect); returns the
        track it replaces (the caller's to stop), None if that one was ours."""
        publication = self.publication
        if publication is None or self._ctx.phase.phase not in IN_ROOM:
            raise RoomError(ErrorCode.ROOM_NOT_CONNECTED, f"cannot switch {kind}: not publishing")
        publication.leg.replace_source(kind, track)  # MediaError when it cannot
        old, self._sources[kind] = self._sources.get(kind), track
        return old

    # ------------------------------------------------------------------ mutes and holds

    async def mute(self, kind: MediaKind, mute: bool) -> None:
        """The app's mute of ``kind``, acknowledged by ``on_audio_event`` / ``on_video_event``
        (``{result, msg: "Audio Off"|...}``). RoomError 1171 when not in a room, 1168 to
        unmute while a moderator hard-mutes it."""
        ctx = self._ctx
        if ctx.phase.phase not in IN_ROOM or ctx.room is None:
            raise RoomError(ErrorCode.ROOM_NOT_CONNECTED, f"cannot mute {kind}: not in a room")
        if not mute and self.media.hard[kind]:
            scopes = ", ".join(sorted(self.media.hard[kind]))
            raise RoomError(
                ErrorCode.NOT_PERMITTED, f"cannot unmute {kind}: hard-muted by a moderator ({scopes})"
            )
        if self.media.muted[kind] == mute:
            ctx.log.debug("mute_unchanged", kind=kind, muted=mute)
            return
        before = self.media.sending(kind)
        self.media.muted[kind] = mute
        ack = await self._media_changed(kind, before)
        word = f"{kind.capitalize()} {'Off' if mute else 'On'}"
        result = (
            {"result": 0, "msg": word} if ack is None or ack.ok else {"result": ack.result, "msg": ack.msg}
        )
        await ctx.fire("on_audio_event" if kind == "audio" else "on_video_event", result)

    async def hard_mute(self, kind: MediaKind, scope: str, hold: bool) -> bool:
        """A moderator's hard mute of ``kind`` (``scope``: ``room`` or ``user``) or its release;
        False when nothing changed. The server relayed the mute itself; a release that lets the
        kind flow again is told to the room as our own unmute."""
        scopes = self.media.hard[kind]
        if (scope in scopes) == hold:
            return False
        before = self.media.sending(kind)
        if hold:
            scopes.add(scope)
        else:
            scopes.discard(scope)
        await self._media_changed(kind, before, tell=not hold)
        return True

    async def hold_video(self, reason: VideoHold, hold: bool) -> None:
        holds = self.media.holds
        if (reason in holds) == hold:
            self._ctx.log.debug("video_hold_unchanged", reason=reason, hold=hold)
            return
        before = self.media.sending("video")
        if hold:
            holds.add(reason)
        else:
            holds.discard(reason)
        self._ctx.log.debug("video_hold", reason=reason, hold=hold)
        await self._media_changed("video", before)

    async def _media_changed(self, kind: MediaKind, before: bool, *, tell: bool = True) -> Ack | None:
        """Gate the sender to the new state and, if what the room sees changed, tell it
        (once our stream is ready; before that ``_published`` does). The room's ack, if asked."""
        after = self.media.sending(kind)
        publication = self.publication
        if publication is not None:
            publication.leg.set_sending(kind, after)
        if self._ctx.room is not None:
            self._ctx.room.set_self_muted(kind, not after)
        if before == after or not tell:
            return None
        if publication is None or publication.state == "ready":
            return await self._request_mute(kind, not after)
        return None

    async def _send_mutes(self, changes: list[tuple[MediaKind, bool]]) -> None:
        for kind, muted in changes:
            await self._request_mute(kind, muted)

    async def _request_mute(self, kind: MediaKind, muted: bool) -> Ack | None:
        session = self._ctx.session
        if session is None or not session.signalling.connected:
            return None  # a rejoin's re-publish tells the room
        try:
            ack = await session.signalling.request(SelfMuteRequest(kind=kind, muted=muted))
        except RoomError as err:
            self._ctx.log.warning("mute_not_sent", kind=kind, muted=muted, error=err.msg)
            return None
        if not ack.ok:
            self._ctx.log.warning("mute_refused", kind=kind, muted=muted, code=ack.result, msg=ack.msg)
        return ack

    # ------------------------------------------------------------------ ending

    def reset_for_rejoin(self) -> None:
        """The room's bandwidth verdicts were about the old connection."""
        self.bw = BandwidthState()
        self.media.holds.discard("bandwidth")

    async def detach(self) -> LocalPublication | None:
        """Stop the publish task and hand back the publication (closed by the caller, after
        the spawned requests stopped)."""
        publication, self.publication = self.publication, None
        task, self._task = self._task, None
        ready, self._ready = self._ready, None
        if ready is not None and not ready.done():
            ready.cancel()
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        return publication

    def stop_owned_tracks(self) -> None:
        for track in self._owned.values():
            track.stop()
        self._owned.clear()

    @property
    def owned_tracks(self) -> list[MediaStreamTrack]:
        """The silence / black tracks made here (tests check they are stopped)."""
        return list(self._owned.values())


async def _quietly(request: Coroutine[Any, Any, Ack]) -> None:
    with suppress(RoomError):
        await request
