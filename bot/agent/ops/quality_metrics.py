"""Per-stream quality metrics with a bounded label set.

A room of 200 streams watched by a few monitors must not make ``/metrics`` unbounded: the first
``max_streams`` streams (``receive.quality.max_streams``, default 100) get series of their own,
``stream="<bot>/<user>#<stream id>"``;
counters of the rest add up under ``stream="_other"``, and the unlabelled totals
(``enx_streams_judged``, ``enx_streams_frozen``, ...) count every stream. A stream that ends
loses its gauges; its counters stay (counters never go back) and keep its place.

==========================================  =========  =========================================
``enx_stream_mos{stream}``                  gauge      audio MOS (E-model), 1..4.5
``enx_stream_video_score{stream}``          gauge      video score, 1..5
``enx_stream_frozen{stream}``               gauge      1 while frozen (also ``_black``,
                                                       ``_silent``, ``_degraded``)
``enx_stream_freezes_total{stream}``        counter    freezes (each, as webrtc-stats counts)
``enx_stream_frozen_seconds_total{stream}`` counter    time spent frozen
``enx_streams_judged``                      gauge      streams judged now
``enx_streams_frozen``                      gauge      of them frozen now (also ``_black``,
                                                       ``_silent``, ``_degraded``)
==========================================  =========  =========================================
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

OTHER = "_other"
DEFAULT_MAX_STREAMS = 100
FLAGS = ("frozen", "black", "silent", "degraded")


class QualityMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.mos = Gauge("enx_stream_mos", "Audio MOS (E-model) per stream.", ["stream"], registry=r)
        self.video = Gauge("enx_stream_video_score", "Video score (1..5) per stream.", ["stream"], registry=r)
        self.flags = {
            name: Gauge(f"enx_stream_{name}", f"1 while the stream is {name}.", ["stream"], registry=r)
            for name in FLAGS
        }
        self.freezes = Counter("enx_stream_freezes", "Video freezes per stream.", ["stream"], registry=r)
        self.frozen_seconds = Counter(
            "enx_stream_frozen_seconds", "Time spent frozen per stream.", ["stream"], registry=r
        )
        self.judged = Gauge("enx_streams_judged", "Streams the quality probes judge now.", registry=r)
        self.totals = {
            name: Gauge(f"enx_streams_{name}", f"Streams {name} now.", registry=r) for name in FLAGS
        }
        self._labels: dict[str, str] = {}
        """stream key -> its label (its own, or OTHER)."""
        self._last: dict[str, tuple[int, float, tuple[bool, ...]]] = {}

    def sample(self, bot: str, stream: str, sample: Mapping[str, object]) -> None:
        key = f"{bot}/{stream}"
        label = self._labels.get(key)
        if label is None:
            limit = sample.get("max_streams")
            limit = limit if isinstance(limit, int) else DEFAULT_MAX_STREAMS
            own = sum(1 for v in self._labels.values() if v != OTHER)
            label = key if own < limit else OTHER
            self._labels[key] = label
        freezes = _int(sample.get("freezes"))
        frozen_s = _float(sample.get("frozen_s"))
        flags = tuple(bool(sample.get(name)) for name in FLAGS)
        before_freezes, before_s, before_flags = self._last.get(key, (0, 0.0, (False,) * len(FLAGS)))
        if key not in self._last:
            self.judged.inc()
        if freezes > before_freezes:
            self.freezes.labels(stream=label).inc(freezes - before_freezes)
        if frozen_s > before_s:
            self.frozen_seconds.labels(stream=label).inc(frozen_s - before_s)
        for name, was, now in zip(FLAGS, before_flags, flags, strict=True):
            if now != was:
                self.totals[name].inc(1 if now else -1)
        ended = bool(sample.get("ended"))
        if ended:
            for name, was in zip(FLAGS, flags, strict=True):
                if was:
                    self.totals[name].dec()
            self.judged.dec()
            self._last.pop(key, None)
            if label != OTHER:
                for gauge in (self.mos, self.video, *self.flags.values()):
                    with contextlib.suppress(KeyError):
                        gauge.remove(label)
            return
        self._last[key] = (max(freezes, before_freezes), max(frozen_s, before_s), flags)
        if label == OTHER:
            return
        for gauge, value in ((self.mos, sample.get("mos")), (self.video, sample.get("video_score"))):
            if isinstance(value, int | float):
                gauge.labels(stream=label).set(value)
        for name, on in zip(FLAGS, flags, strict=True):
            self.flags[name].labels(stream=label).set(1 if on else 0)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _float(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
