"""A bot's quality probe: a :class:`~bot.media.ProbeSink` and a :class:`~.judge.StreamJudge`
per received stream, one ticker for all of them, scores into ``stream_stats`` and the observer.

One ticker per event loop (every :data:`TICK_S`) judges the streams of every probe on it (a
task per bot cost a tenth of a percent of a core per stream in wake-ups alone) and runs only
while streams are judged; a stream whose sink was closed (its leg ended) is judged no more and
its last sample goes out with ``ended``.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from typing import Any

from bot.media import ProbeSink

from ..ops.observe import BotObserver, NullObserver
from .config import QualityConfig
from .judge import StreamJudge, StreamKey

Json = dict[str, Any]

TICK_S = 0.5
"""How often arrivals are judged: detection comes within ``freeze_ms`` + this."""

MUTES_S = 0.5
"""How often the participants' mute flags are read again (a mute also takes a relay to arrive)."""

_SHOWN = ("frozen", "black", "silent", "still", "degraded")
"""The verdicts the observer (metrics, report timeline) hears about."""


class _Ticker:
    """Ticks every probe of one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.probes: dict[QualityProbe, None] = {}
        self.task: asyncio.Task[None] | None = None

    def add(self, probe: QualityProbe) -> None:
        self.probes[probe] = None
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._run(), name="quality-ticker")

    async def _run(self) -> None:
        while self.probes:
            await asyncio.sleep(TICK_S)
            for probe in list(self.probes):
                probe.safe_tick()
                if not probe.judges:
                    self.probes.pop(probe, None)


_tickers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Ticker] = weakref.WeakKeyDictionary()


def _ticker() -> _Ticker | None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no running loop: ticked by hand (tests)
        return None
    ticker = _tickers.get(loop)
    if ticker is None:
        ticker = _tickers[loop] = _Ticker(loop)
    return ticker


class QualityProbe:
    def __init__(
        self,
        cfg: QualityConfig,
        log: Callable[[], Any],
        *,
        users: Callable[[], list[Json]] = list,
        events: BotObserver | None = None,
        bot: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self._log = log
        self._users = users
        self._events: BotObserver = events if events is not None else NullObserver()
        self._bot = bot
        self._clock = clock
        self.judges: dict[object, StreamJudge] = {}
        self._shown: dict[object, tuple[bool, ...]] = {}
        self._muted: dict[str, tuple[bool, bool]] = {}
        self._muted_at = -float("inf")

    def sink(self, info: Json, log: Any) -> ProbeSink:
        """The sink of a new subscription (``EnxRtc``'s ``sink_factory`` calls this on the loop)."""
        cfg = self.cfg
        sink = ProbeSink(
            decode_every_s=cfg.sample_every,
            decode_audio=cfg.decode_audio,
            silence_dbfs=cfg.silence_dbfs,
            request_keyframe=info.get("request_keyframe"),
        )
        kinds = tuple(k for k in ("audio", "video") if info.get(k))
        user = str(info.get("name") or info.get("clientId") or f"stream-{info.get('streamId')}")
        key = StreamKey(info.get("streamId"), user, info.get("clientId"))
        old = self.judges.pop(key.stream_id, None)
        if old is not None:
            self._ended(old)
        self.judges[key.stream_id] = StreamJudge(cfg, key, kinds, sink, log, self._clock())
        ticker = _ticker()
        if ticker is not None:
            ticker.add(self)
        return sink

    def safe_tick(self) -> None:
        try:
            self.tick()
        except Exception:  # never let judging end the bot; counted
            self._log().exception("quality_tick_failed")
            self._events.failure("quality")

    def tick(self) -> None:
        now = self._clock()
        if now - self._muted_at >= MUTES_S:
            self._muted, self._muted_at = self._mutes(), now
        muted = self._muted
        for stream_id, judge in list(self.judges.items()):
            if judge.sink.closed:
                del self.judges[stream_id]
                self._ended(judge)
                continue
            audio, video = muted.get(judge.key.user_id or "", (False, False))
            judge.tick(now, audio, video)
            self._show(judge)

    def _mutes(self) -> dict[str, tuple[bool, bool]]:
        out: dict[str, tuple[bool, bool]] = {}
        for user in self._users():
            out[str(user.get("clientId"))] = (bool(user.get("audioMuted")), bool(user.get("videoMuted")))
        return out

    def on_stats(self, sub: Json) -> Json:
        """The quality fields for ``sub``'s ``stream_stats`` line (nothing for a stream not judged)."""
        judge = self.judges.get(sub.get("streamId"))
        if judge is None:
            return {}
        fields = judge.on_stats(sub, self._clock())
        self._show(judge, force=True)
        return fields

    def _show(self, judge: StreamJudge, force: bool = False, ended: bool = False) -> None:
        flags = judge.flags()
        state = tuple(flags[name] for name in _SHOWN)
        key = judge.key.stream_id
        if not force and not ended and self._shown.get(key) == state:
            return
        self._shown[key] = state
        sample: Json = {
            "user": judge.key.user,
            "user_id": judge.key.user_id,
            "stream_id": judge.key.stream_id,
            "mos": judge.mos,
            "video_score": judge.video_score,
            "freezes": judge.freezes,
            "frozen_s": round(judge.frozen_s, 3),
            "frozen": flags["frozen"],
            "black": flags["black"],
            "silent": flags["silent"],
            "picture_frozen": flags["still"],
            "degraded": flags["degraded"],
            "ended": ended,
            "max_streams": self.cfg.max_streams,
        }
        self._events.stream_quality(self._bot, f"{judge.key.user}#{judge.key.stream_id}", sample)

    def _ended(self, judge: StreamJudge) -> None:
        self._show(judge, ended=True)
        self._shown.pop(judge.key.stream_id, None)

    async def aclose(self) -> None:
        for judge in list(self.judges.values()):
            self._ended(judge)
        self.judges.clear()
        for ticker in list(_tickers.values()):
            ticker.probes.pop(self, None)
