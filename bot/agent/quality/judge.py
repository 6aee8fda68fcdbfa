"""One received stream judged: readings of its :class:`~bot.media.ProbeSink` (every tick) and
its WebRTC statistics (every stats interval) become verdicts, events and scores.

Each verdict is a :class:`~.verdict.Verdict`; its events are :data:`EVENTS` (raised, cleared),
logged with ``stream_id``, ``user`` and ``user_id``. Arrival verdicts (freeze, frame rate, black,
still picture, silence, audio gap) start at a kind's first frame and are off while the publisher
has that kind muted (then a raised one clears at once, ``reason="muted"``), so a mute is never a
freeze or a silence; after an unmute they start again at the first frame that comes.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

from bot.media import ProbeSink, Reading

from .config import QualityConfig
from .mos import audio_mos, video_score
from .verdict import Verdict

Json = dict[str, Any]

EVENTS: dict[str, tuple[str, str]] = {
    "frozen": ("video_frozen", "video_resumed"),
    "fps": ("video_fps_low", "video_fps_recovered"),
    "black": ("video_black", "video_unblack"),
    "still": ("picture_frozen", "picture_moving"),
    "silent": ("audio_silent", "audio_resumed"),
    "gap": ("audio_gap", "audio_gap_ended"),
    "loss": ("loss_high", "loss_recovered"),
    "jitter": ("jitter_high", "jitter_recovered"),
    "keyframes": ("keyframe_storm", "keyframe_storm_ended"),
    "degraded": ("quality_degraded", "quality_recovered"),
}
"""Verdict -> (event when raised, event when cleared)."""

_KIND_OF = {
    "frozen": "video",
    "fps": "video",
    "black": "video",
    "still": "video",
    "keyframes": "video",
    "silent": "audio",
    "gap": "audio",
}


@dataclass(frozen=True)
class StreamKey:
    stream_id: object
    user: str
    user_id: str | None


class StreamJudge:
    """Verdicts and scores of one stream (see the module). Call from the event loop."""

    def __init__(
        self,
        cfg: QualityConfig,
        key: StreamKey,
        kinds: tuple[str, ...],
        sink: ProbeSink,
        log: Any,
        now: float,
    ) -> None:
        self.cfg = cfg
        self.key = key
        self.kinds = kinds
        self.sink = sink
        self._log = log
        hold = cfg.hold
        self.verdicts = {name: Verdict(0.0, hold) for name in EVENTS}
        self.verdicts["still"] = Verdict(cfg.still_s, hold)
        self.verdicts["degraded"] = Verdict(cfg.degraded_after, hold)
        self.started = now
        self.reading = Reading()
        self.muted = {"audio": False, "video": False}
        self._since = {"audio": now, "video": now}  # unmuted (or created) at
        self._history: collections.deque[tuple[float, int, int, int]] = collections.deque()
        self.fps: float | None = None
        self.keyframe_rate: float | None = None
        self.freezes = 0
        self.frozen_s = 0.0
        self._raw_frozen = False
        self._last_tick = now
        self._frozen_at_stats = 0.0
        self._stats_at = now
        self.mos: float | None = None
        self.video_score: float | None = None
        self.loss: float | None = None
        self.jitter_ms: float | None = None

    # -- every tick: arrivals -----------------------------------------------------------------

    def tick(self, now: float, muted_audio: bool, muted_video: bool) -> None:
        r = self.reading = self.sink.reading()
        for kind, muted in (("audio", muted_audio), ("video", muted_video)):
            if muted != self.muted[kind]:
                self.muted[kind] = muted
                self._since[kind] = now
                if kind == "video":
                    self._history.clear()
                    self.fps = self.keyframe_rate = None
                if muted:
                    self._mute_clears(kind, now)
        bad = self._arrivals(r, now)
        dt = now - self._last_tick
        self._last_tick = now
        if bad["frozen"]:
            if not self._raw_frozen:
                self.freezes += 1
                dt = self.cfg.freeze_ms / 1000  # the freeze began when the last frame came
            self.frozen_s += dt
        self._raw_frozen = bad["frozen"]
        for name, is_bad in bad.items():
            self._judge(name, is_bad, now)
        self._judge("degraded", self._below_min(), now)

    def _arrivals(self, r: Reading, now: float) -> dict[str, bool]:
        cfg = self.cfg
        # judged from the first frame since the subscription or the last unmute: a publisher's
        # media takes a moment to flow again after an unmute, and that is no freeze
        last_video, last_audio = r.last_video_at, r.last_audio_at
        video = "video" in self.kinds and not self.muted["video"]
        video = video and last_video is not None and last_video >= self._since["video"]
        audio = "audio" in self.kinds and not self.muted["audio"]
        audio = audio and last_audio is not None and last_audio >= self._since["audio"]
        frozen = video and now - (last_video or 0.0) >= cfg.freeze_ms / 1000
        gap = audio and now - (last_audio or 0.0) >= cfg.gap_ms / 1000
        self._rates(r, now)
        fps_low = video and not frozen and self.fps is not None and self.fps < cfg.min_fps
        storm = video and self.keyframe_rate is not None and self.keyframe_rate > cfg.max_keyframes_per_s
        picture = (
            r.picture if video and r.picture is not None and r.picture.at > self._since["video"] else None
        )
        black = picture is not None and picture.luma < cfg.black_luma
        still = (
            picture is not None
            and not frozen
            and not black
            and picture.difference is not None
            and picture.difference < cfg.still_difference
        )
        silent = False
        if audio and cfg.decode_audio and not gap and r.audio_decoded:
            loud = max(r.last_loud_at or 0.0, self._since["audio"])
            silent = now - loud >= cfg.silence_ms / 1000
        return {
            "frozen": frozen,
            "fps": fps_low,
            "black": black,
            "still": still,
            "silent": silent,
            "gap": gap,
            "keyframes": storm,
        }

    def _rates(self, r: Reading, now: float) -> None:
        if r.last_video_at is None or r.last_video_at < self._since["video"]:
            return  # the window starts with a frame, not with the subscription or an unmute
        h = self._history
        h.append((now, r.video_frames, r.keyframes, r.keyframes_asked))
        window = self.cfg.window_s
        while len(h) > 2 and now - h[1][0] >= window:
            h.popleft()
        t0, frames0, keys0, asked0 = h[0]
        if now - t0 >= window * 0.9:
            self.fps = (r.video_frames - frames0) / (now - t0)
            # the keyframes we asked for (sampled decoding) are not a storm
            theirs = (r.keyframes - keys0) - (r.keyframes_asked - asked0)
            self.keyframe_rate = max(0, theirs) / (now - t0)

    def _mute_clears(self, kind: str, now: float) -> None:
        for name, of in _KIND_OF.items():
            if of == kind and self.verdicts[name].reset():
                self._log.info(EVENTS[name][1], **self._fields(), reason="muted")
        self._raw_frozen = self._raw_frozen and kind != "video"

    # -- every stats interval: the network --------------------------------------------------

    def on_stats(self, sub: Json, now: float) -> Json:
        """Judge loss and jitter, score the stream; the fields ``stream_stats`` adds."""
        kinds = {k: sub[k] for k in ("audio", "video") if isinstance(sub.get(k), dict)}
        losses = [_num(k.get("fractionLost")) for k in kinds.values()]
        jitters = [_num(k.get("jitter")) for k in kinds.values()]
        self.loss = max((x for x in losses if x is not None), default=None)
        worst_jitter = max((x for x in jitters if x is not None), default=None)
        self.jitter_ms = None if worst_jitter is None else round(worst_jitter * 1000, 1)
        self._judge("loss", self.loss is not None and self.loss > self.cfg.max_loss, now)
        self._judge("jitter", self.jitter_ms is not None and self.jitter_ms > self.cfg.max_jitter_ms, now)
        audio = kinds.get("audio")
        self.mos = None
        if audio is not None and not self.muted["audio"] and self.reading.last_audio_at is not None:
            loss = 1.0 if self.verdicts["gap"].raised else (_num(audio.get("fractionLost")) or 0.0)
            jitter = _num(audio.get("jitter"))
            rtt = _num(audio.get("roundTripTime"))
            self.mos = audio_mos(
                loss, None if jitter is None else jitter * 1000, None if rtt is None else rtt * 1000
            )
        self.video_score = None
        fps = self.fps if self.fps is not None else _num(kinds.get("video", {}).get("framesPerSecond"))
        if fps is not None and not self.muted["video"] and self.reading.last_video_at is not None:
            span = max(1e-3, now - self._stats_at)
            frozen_fraction = (self.frozen_s - self._frozen_at_stats) / span
            picture = self.reading.picture
            self.video_score = video_score(fps, None if picture is None else picture.height, frozen_fraction)
        self._frozen_at_stats, self._stats_at = self.frozen_s, now
        self._judge("degraded", self._below_min(), now)
        return self.fields()

    def _below_min(self) -> bool:
        scores = [s for s in (self.mos, self.video_score) if s is not None]
        return any(s < self.cfg.min_mos for s in scores)

    # -- events -------------------------------------------------------------------------------

    def _judge(self, name: str, bad: bool, now: float) -> None:
        verdict = self.verdicts[name]
        change = verdict.update(bad, now)
        if change is None:
            return
        raised_event, cleared_event = EVENTS[name]
        if change == "raised":
            self._log.warning(raised_event, **self._fields(), **self._detail(name))
        else:
            lasted = None if verdict.raised_at is None else round(now - verdict.raised_at, 2)
            self._log.info(cleared_event, **self._fields(), lasted_s=lasted, **self._detail(name))

    def _detail(self, name: str) -> Json:
        r = self.reading
        picture = r.picture
        if name in ("frozen", "fps"):
            return {"fps": _round(self.fps), "freezes": self.freezes, "frozen_s": round(self.frozen_s, 2)}
        if name in ("black", "still"):
            return {
                "luma": None if picture is None else round(picture.luma, 1),
                "difference": None
                if picture is None or picture.difference is None
                else round(picture.difference, 2),
            }
        if name == "silent":
            return {"level_dbfs": _round(r.level_dbfs)}
        if name in ("loss", "jitter"):
            return {"fraction_lost": self.loss, "jitter_ms": self.jitter_ms}
        if name == "keyframes":
            return {"keyframes_per_s": _round(self.keyframe_rate)}
        if name == "degraded":
            return {"mos": self.mos, "video_score": self.video_score, "min_mos": self.cfg.min_mos}
        return {}

    def _fields(self) -> Json:
        return {"stream_id": self.key.stream_id, "user": self.key.user, "user_id": self.key.user_id}

    def flags(self) -> dict[str, bool]:
        return {name: v.raised for name, v in self.verdicts.items()}

    def fields(self) -> Json:
        """The quality fields of a ``stream_stats`` line."""
        r = self.reading
        picture = r.picture
        out: Json = {
            "mos": self.mos,
            "video_score": self.video_score,
            "freezes": self.freezes,
            "frozen_s": round(self.frozen_s, 2),
            "frozen": self.verdicts["frozen"].raised,
            "degraded": self.verdicts["degraded"].raised,
        }
        if self.cfg.sample_every is not None:
            out["black"] = self.verdicts["black"].raised
            out["picture_frozen"] = self.verdicts["still"].raised
            out["luma"] = None if picture is None else round(picture.luma, 1)
            out["resolution"] = None if picture is None else f"{picture.width}x{picture.height}"
        if self.cfg.decode_audio:
            out["silent"] = self.verdicts["silent"].raised
            out["level_dbfs"] = _round(r.level_dbfs)
        if self.cfg.decodes:
            out["decode_ms"] = round(r.decode_s * 1000, 1)
        return out


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)
