"""One bot: open media, join with the token it was given, log every room event, leave when told.

The runner (``bot.agent.swarm.runner``) gets the token and decides on retries: a failed join
comes back as a :class:`BotResult` whose ``code`` is the room error's code (None: no room error).

Every room event becomes one structured log line named after the seed callback in
snake_case; lines about another participant carry its ``user`` (name) and ``user_id``
(clientId), while ``bot``, ``room`` and ``client_id`` identify this bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from aiortc.mediastreams import MediaStreamTrack

from bot.media import MediaError, MediaSpec, SharedMedia, open_media
from bot.rtc import EnxRtc, RoomError

from ..config import BotConfig
from ..ops.observe import BotObserver, NullObserver, listening
from ..rules.policy import Action, BandwidthFallback
from .chat import Chat
from .moderation import wire_moderation
from .receive import Receiver
from .room_control import RoomControl, join_outcome, join_unless_stopped, session_outcome
from .room_log import EVERY_BOT, RoomLog
from .scenario import ScenarioRun
from .talkers import TalkerLog

log = structlog.get_logger("bot.agent")

TOTALS_INTERVAL_S = 5.0
"""How often a bot without ``receive.stats_interval_s`` reports its media totals to the observer."""


class Outcome(enum.StrEnum):
    COMPLETED = "completed"  # stayed as long as asked, or stopped by a signal, and left cleanly
    JOIN_FAILED = "join_failed"
    LOST = "lost"  # the session ended without being asked to
    DROPPED = "dropped"  # a moderator (or the application server) removed it: not a failure, exit 0
    ROOM_ENDED = "room_ended"  # the room's duration ran out (2003): not a failure
    DENIED = "denied"  # a moderator turned the waiting bot away (4130)
    WAIT_TIMEOUT = "wait_timeout"  # nobody let the bot in within room_info.wait_timeout_s (4131)


@dataclass
class BotResult:
    name: str
    outcome: Outcome
    reason: str = ""
    join_ms: float | None = None
    publish_ms: float | None = None
    code: int | None = None
    """The room error's code when the join failed with one (see ``rules.retry.retryable``)."""
    rejoin: bool = False
    """The scenario asked to leave and join again (with a fresh token): not the bot's end."""


def media_spec(cfg: BotConfig) -> MediaSpec:
    m = cfg.media
    return MediaSpec(
        kind=m.kind, width=m.width, height=m.height, fps=m.fps, tone_hz=m.tone_hz, file=m.file, loop=m.loop
    )


class Bot:
    """One bot, joining with ``token`` (single use: one Bot per join attempt). ``media``: the
    process's shared encoders to take tracks from (None: this bot encodes its own media)."""

    def __init__(
        self,
        cfg: BotConfig,
        token: str,
        room_label: str = "",
        *,
        media: SharedMedia | None = None,
        events: BotObserver | None = None,
        scenario: ScenarioRun | None = None,
        room_log: RoomLog = EVERY_BOT,
    ) -> None:
        self.cfg = cfg
        self.room_log = room_log
        self.scenario = scenario
        self.events: BotObserver = events if events is not None else NullObserver()
        self.token = token
        self.room_label = room_label
        self.media = media
        self.rtc: EnxRtc | None = None
        self._stop = asyncio.Event()
        self.log = log.bind(bot=cfg.name, room=room_label or None)
        self.result: BotResult | None = None
        self._t_join: float | None = None
        self.published = asyncio.Event()
        self._streams: dict[object, dict[str, Any]] = {}  # stream id -> onAddStream payload
        self.policy = BandwidthFallback(cfg.policy.bandwidth_fallback)
        self._policy_timer: asyncio.TimerHandle | None = None
        self._policy_tasks: set[asyncio.Task[None]] = set()
        self.receiver = Receiver(
            cfg.receive, lambda: self.log, users=self._users, events=self.events, bot=cfg.name
        )
        self.chat = Chat(
            cfg.name, cfg.receive, log=lambda: self.log, events=self.events, rtc=lambda: self.rtc
        )
        self._totals_task: asyncio.Task[None] | None = None
        self.room_control = RoomControl(cfg, self.log)  # waiting room, duration, lecture floor
        self.room_control.log = lambda: self.log

    def __repr__(self) -> str:
        return f"Bot({self.cfg.name!r}, room={self.room_label!r})"  # never the token

    def _users(self) -> list[dict[str, Any]]:
        return [] if self.rtc is None else self.rtc.get_user_list()

    def stop(self) -> None:
        """Ask the bot to leave; ``run`` returns once it has."""
        self._stop.set()

    async def run(self) -> BotResult:
        try:
            self.result = await self._run()
        except asyncio.CancelledError:
            self.result = BotResult(self.cfg.name, Outcome.COMPLETED, "cancelled")
            raise
        return self.result

    async def _sleep_unless_stopped(self, seconds: float) -> bool:
        """True when the full time passed, False when a stop came first."""
        if seconds <= 0:
            return not self._stop.is_set()
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            return True
        return False

    async def _run(self) -> BotResult:
        cfg = self.cfg
        if not await self._sleep_unless_stopped(cfg.join_delay):
            return BotResult(cfg.name, Outcome.COMPLETED, "stopped before joining")
        audio = video = None
        try:
            local_info = cfg.join_local_info()
            if local_info.audio or local_info.video:
                audio, video = self._open_media(local_info.audio, local_info.video)
            receive = cfg.receive
            rtc = EnxRtc(
                audio_track=audio,
                video_track=video,
                subscribe=receive.subscribe_option,
                # audio-only rooms receive no video either
                max_video_subscriptions=0 if cfg.room_info.audio_only else receive.max_video,
                sink_factory=self.receiver,
                stats_interval_s=receive.stats_seconds,
                on_callback_error=lambda name, _exc: self.callback_failed(name),
                on_failure=lambda where, _exc: self.events.failure(f"rtc:{where}"),
            )
            self.rtc = rtc
            self._wire_callbacks(rtc)
            self._t_join = time.perf_counter()
            self.log.info("joining", role=cfg.role)
            join = rtc.join_room(self.token, local_info, cfg.room_info, dict(cfg.advance_options))
            if not await join_unless_stopped(rtc, self._stop, join):
                return BotResult(cfg.name, Outcome.COMPLETED, "stopped while joining")
        except RoomError as exc:
            return BotResult(cfg.name, Outcome(join_outcome(exc.code)), f"{exc}", code=exc.code)
        except MediaError as exc:
            self.log.error("media_error", error=str(exc))
            return BotResult(cfg.name, Outcome.JOIN_FAILED, str(exc))
        except Exception as exc:  # a bug, not the room: report with the traceback, never crash the others
            reason = str(exc) or type(exc).__name__
            self.log.error("bot_failed", where="join", error=reason, exc_info=True)
            self.events.failure("bot_task")
            return BotResult(cfg.name, Outcome.JOIN_FAILED, reason)
        finally:
            if self.rtc is None:
                for track in (audio, video):
                    if track is not None:
                        track.stop()
        join_ms = (time.perf_counter() - self._t_join) * 1000 - self.room_control.waited_ms
        self.events.bot_state(cfg.name, "connected")
        self.events.join_latency(cfg.name, join_ms / 1000)
        if cfg.receive.stats_seconds is None and listening(self.events):
            self._totals_task = asyncio.create_task(self._sample_totals(rtc), name=f"{cfg.name}:totals")
        try:
            outcome, reason = await self._stay(rtc)
        finally:
            if self._policy_timer is not None:
                self._policy_timer.cancel()
            if self._totals_task is not None:
                self._totals_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._totals_task
            await self.chat.aclose()
            await self.room_control.aclose()
            await rtc.disconnect()
            if self.receiver.quality is not None:
                await self.receiver.quality.aclose()
            for track in (audio, video):
                if track is not None:
                    track.stop()
        result = BotResult(cfg.name, outcome, reason, join_ms=join_ms, rejoin=self._rejoin)
        result.publish_ms = self._publish_ms
        return result

    _publish_ms: float | None = None
    _rejoin = False

    def _open_media(
        self, audio: bool, video: bool
    ) -> tuple[MediaStreamTrack | None, MediaStreamTrack | None]:
        """The tracks to publish: subscribers of the shared encoders, or this bot's own."""
        if self.media is not None:
            return self.media.tracks(media_spec(self.cfg), audio=audio, video=video)
        return open_media(media_spec(self.cfg), audio=audio, video=video, label=self.cfg.name)

    async def _stay(self, rtc: EnxRtc) -> tuple[Outcome, str]:
        stop = asyncio.ensure_future(self._stop.wait())
        gone = asyncio.ensure_future(rtc.wait_disconnected())
        waiters: set[asyncio.Future[Any]] = {stop, gone}
        scenario = asyncio.ensure_future(self.scenario.drive(self)) if self.scenario else None
        if scenario is not None:
            waiters.add(scenario)
        try:
            done, _ = await asyncio.wait(waiters, timeout=self.cfg.stay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            if scenario is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await scenario  # an action in flight is cancelled with the session
        if scenario in done and not scenario.cancelled() and scenario.exception() is None:
            ending = scenario.result()
            self._rejoin = ending == "rejoin"
            return Outcome.COMPLETED, f"scenario: {ending}"
        if gone in done and not gone.cancelled():
            cause = gone.result() or {}  # dropped, room ended or lost (room_control.session_outcome)
            return Outcome(session_outcome(cause.get("cause"))), str(cause.get("msg", "disconnected"))
        if stop in done:
            return Outcome.COMPLETED, "signal"
        self.log.info("stay_over", stay_s=self.cfg.stay)
        return Outcome.COMPLETED, "stay over"

    # ------------------------------------------------------------------ callbacks -> log lines

    def _wire_callbacks(self, rtc: EnxRtc) -> None:
        rtc.on_room_connected = self._on_room_connected
        rtc.on_room_error = self._on_room_error
        rtc.on_room_disconnected = self._on_room_disconnected
        rtc.on_user_connected = lambda u: self._user_event("user_connected", u)
        rtc.on_user_disconnected = lambda u: self._user_event("user_disconnected", u)
        rtc.on_published_stream = self._on_published
        rtc.on_unpublished_stream = lambda p: self.log.info("unpublished_stream", stream_id=p.get("streamId"))
        rtc.on_stream_added = lambda s: self._stream_event("stream_added", s)
        rtc.on_stream_removed = lambda s: self._stream_event("stream_removed", s)
        rtc.on_subscribed_stream = self._on_subscribed
        rtc.on_stats = self._on_stats
        rtc.on_connection_lost = lambda p: self._on_connection_broken("connection_lost", p)
        rtc.on_connection_interrupted = lambda p: self._on_connection_broken("connection_interrupted", p)
        rtc.on_reconnect = self._on_reconnect
        rtc.on_user_reconnect_success = self._on_reconnected
        rtc.on_room_bandwidth_alert = self._on_bandwidth_alert
        rtc.on_room_bandwidth_restored = self._on_bandwidth_restored
        rtc.on_active_talker_list = TalkerLog(lambda: self.log)
        rtc.on_message_received = self._on_message
        rtc.on_user_data_received = self.chat.user_data_received
        wire_moderation(rtc, lambda: self.log)
        self.room_control.wire(rtc)

    def _on_message(self, payload: dict[str, Any]) -> None:
        self.chat.message_received(payload)
        if self.scenario is not None:
            self.scenario.heard(payload)

    def remote_streams(self) -> dict[object, dict[str, Any]]:
        """The other participants' streams now in the room: id -> ``{name, clientId}``."""
        return {
            sid: {
                "name": (s.get("attributes") or {}).get("name") or s.get("name"),
                "clientId": s.get("clientId"),
            }
            for sid, s in self._streams.items()
        }

    async def send_message(self, text: str, to: Iterable[str] | str = ()) -> dict[str, Any]:
        """Chat from this bot (see :meth:`Chat.send_message`): the scenario engine's way in."""
        return await self.chat.send_message(text, to)

    async def send_user_data(self, data: object, to: Iterable[str] | str = ()) -> dict[str, Any]:
        """Custom data from this bot (see :meth:`Chat.send_user_data`)."""
        return await self.chat.send_user_data(data, to)

    def callback_failed(self, name: str) -> None:
        """An EnxRtc callback of this bot raised (EnxRtc logged it): count it as
        ``enx_failures_total{where="callback:<name>"}``."""
        self.events.failure(f"callback:{name}")

    def _on_subscribed(self, payload: dict[str, Any]) -> None:
        self.log.info(
            "subscribed_stream",
            stream_id=payload.get("streamId"),
            user=payload.get("name"),
            user_id=payload.get("clientId"),
            audio=payload.get("audio"),
            video=payload.get("video"),
            tapped=payload.get("tapped"),
        )

    def _on_stats(self, payload: dict[str, Any]) -> None:
        self.receiver.log_stats(payload)
        self._media_totals(payload)

    def _media_totals(self, payload: dict[str, Any]) -> None:
        self.events.media(self.cfg.name, *self.receiver.totals(payload))

    async def _sample_totals(self, rtc: EnxRtc) -> None:
        """Media totals for the observer every ``TOTALS_INTERVAL_S`` (when ``on_stats`` is off)."""
        while True:
            await asyncio.sleep(TOTALS_INTERVAL_S)
            if rtc.phase != "connected":
                continue
            try:
                payload = await rtc.stats()
            except Exception:  # never let counting end the session
                self.log.debug("stats_failed", exc_info=True)
                continue
            self._media_totals(payload)

    def _on_connection_broken(self, event: str, payload: dict[str, Any]) -> None:
        self.log.warning(event, **_fields(payload))
        self.events.bot_state(self.cfg.name, "reconnecting")

    def _on_reconnect(self, payload: dict[str, Any]) -> None:
        self.log.info("reconnect", **_fields(payload))
        self.events.reconnect(self.cfg.name)

    def _on_reconnected(self, payload: dict[str, Any]) -> None:
        me = payload.get("me") or {}
        if me.get("clientId"):
            self.log = self.log.bind(client_id=me["clientId"])
        self.log.info("user_reconnect_success", **_fields(payload, skip=("me", "users", "streams", "room")))
        self.events.bot_state(self.cfg.name, "audio-only" if self.policy.audio_only else "connected")
        self._count_participants()

    def _count_participants(self) -> None:
        if self.rtc is not None and self.room_label:
            self.events.room_participants(self.room_label, self.rtc.user_count)

    # ------------------------------------------------------------------ bandwidth fallback

    def _on_bandwidth_alert(self, payload: dict[str, Any]) -> None:
        self.log.warning("room_bandwidth_alert", **_fields(payload))
        self.events.bandwidth_alert(self.cfg.name)
        self._apply(self.policy.on_alert(asyncio.get_running_loop().time()))

    def _on_bandwidth_restored(self, payload: dict[str, Any]) -> None:
        self.log.info("room_bandwidth_restored", **_fields(payload))
        self._apply(self.policy.on_restored(asyncio.get_running_loop().time()))

    def _apply(self, action: Action | None) -> None:
        loop = asyncio.get_running_loop()
        if action is not None and self.rtc is not None:
            audio_only = action is Action.FALLBACK
            if audio_only:
                self.log.warning("audio_only_fallback", hold_s=self.policy.settings.min_hold_s)
                self.events.fallback(self.cfg.name)
                self.events.bot_state(self.cfg.name, "audio-only")
            else:
                self.log.info("video_restored", fallbacks=self.policy.fallbacks)
                self.events.bot_state(self.cfg.name, "connected")
            task = loop.create_task(self._set_audio_only(audio_only), name=f"{self.cfg.name}:audio-only")
            self._policy_tasks.add(task)
            task.add_done_callback(self._policy_tasks.discard)
        if self._policy_timer is not None:
            self._policy_timer.cancel()
            self._policy_timer = None
        deadline = self.policy.next_deadline()
        if deadline is not None:
            self._policy_timer = loop.call_at(deadline, self._poll_policy)

    def _poll_policy(self) -> None:
        self._policy_timer = None
        self._apply(self.policy.poll(asyncio.get_running_loop().time()))

    async def _set_audio_only(self, on: bool) -> None:
        assert self.rtc is not None
        try:
            await self.rtc.set_audio_only_mode(on)
        except Exception as exc:
            self.log.error(
                "audio_only_mode_failed", audio_only=on, error=str(exc) or type(exc).__name__, exc_info=True
            )
            self.events.failure("bot_task")

    def _on_room_connected(self, payload: dict[str, Any]) -> None:
        me = payload.get("me") or {}
        room = payload.get("room") or {}
        room_id = payload.get("roomId") or room.get("id") or self.room_label
        self.log = self.log.bind(room=room_id, client_id=me.get("clientId"))
        users = payload.get("users") or []
        if room_id:
            self.room_label = str(room_id)
        self._count_participants()
        self.room_control.room_connected(payload)
        self.log.info(
            "room_connected",
            join_ms=round(
                (time.perf_counter() - (self._t_join or 0)) * 1000 - self.room_control.waited_ms, 1
            ),
            **({"waited_ms": self.room_control.waited_ms} if self.room_control.waited_ms else {}),
            participants=[u.get("name") for u in users if u.get("clientId") != me.get("clientId")],
            role=me.get("role"),
        )
        # streams already in the room arrive with room-connected, not as onAddStream: log them
        # the same way, so every stream_removed has its stream_added
        for stream in payload.get("streams") or []:
            if isinstance(stream, dict) and stream.get("clientId") != me.get("clientId"):
                self._stream_event("stream_added", {**stream, "existing": True})

    def _on_room_error(self, payload: dict[str, Any]) -> None:
        self.log.error("room_error", code=payload.get("result"), error=payload.get("msg"))

    def _on_room_disconnected(self, payload: dict[str, Any]) -> None:
        self.log.info("room_disconnected", cause=payload.get("cause"), reason=payload.get("msg"))

    def _on_published(self, payload: dict[str, Any]) -> None:
        if self._t_join is not None:
            self._publish_ms = round((time.perf_counter() - self._t_join) * 1000, 1)
        self.published.set()
        self.log.info("published_stream", stream_id=payload.get("streamId"), publish_ms=self._publish_ms)

    def _room_id(self) -> str | None:
        return None if self.rtc is None else self.rtc.room_id

    def _user_event(self, event: str, user: dict[str, Any]) -> None:
        if self.room_log.first(self._room_id(), event, user.get("clientId")):
            self.log.info(
                event, user=user.get("name"), user_id=user.get("clientId"), user_role=user.get("role")
            )
        self._count_participants()

    def _stream_event(self, event: str, stream: dict[str, Any]) -> None:
        # onRemoveStream carries only the id: name the stream from what onAddStream said
        if event == "stream_added":
            self._streams[stream.get("id")] = stream
        else:
            known = {k: v for k, v in self._streams.pop(stream.get("id"), {}).items() if k != "existing"}
            stream = {**known, **stream}
        if not self.room_log.first(self._room_id(), event, stream.get("id")):
            return
        attrs = stream.get("attributes") or {}
        self.log.info(
            event,
            stream_id=stream.get("id"),
            user=attrs.get("name") or stream.get("name"),
            user_id=stream.get("clientId"),
            audio=stream.get("audio"),
            video=stream.get("video"),
            **({"existing": True} if stream.get("existing") else {}),
        )


def _fields(payload: object, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A callback payload as log keywords (never clobbering structlog's own keys)."""
    if not isinstance(payload, dict):
        return {"payload": payload}
    reserved = {"event", "level", "timestamp", "bot", "room", "client_id"}
    return {(f"{k}_" if k in reserved else k): v for k, v in payload.items() if k not in skip}
