"""The report's per-stream quality timeline: what monitoring bots judged, over time.

:class:`QualityTimelines` keeps, per judged stream, the MOS and video-score curves and the
bands (from, to) each verdict was raised (``frozen``, ``black``, ``silent``, ``picture_frozen``,
``degraded``); :func:`svg_quality` draws one stream: the curves over 1..5 and a lane per verdict
under them. Bounded: at most :data:`MAX_STREAMS` streams and :data:`MAX_POINTS` points each (the
curve keeps every other point when full), so a long run of a big room stays a small page.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

BANDS = ("frozen", "black", "silent", "picture_frozen", "degraded")
MAX_STREAMS = 200
MAX_POINTS = 2000
HTML_STREAMS = 50
"""Streams drawn in the HTML (all are in the JSON)."""

W, H = 640, 262
M_LEFT, M_RIGHT, M_TOP = 96, 16, 12
PLOT_H = 130
LANE_H = 14


@dataclass
class StreamTimeline:
    bot: str
    stream: str
    user: str = ""
    user_id: str | None = None
    freezes: int = 0
    frozen_s: float = 0.0
    mos: list[tuple[float, float]] = field(default_factory=list)
    video_score: list[tuple[float, float]] = field(default_factory=list)
    bands: dict[str, list[list[float | None]]] = field(default_factory=lambda: {b: [] for b in BANDS})
    ended_at: float | None = None


class QualityTimelines:
    def __init__(self) -> None:
        self.streams: dict[tuple[str, str], StreamTimeline] = {}
        self.dropped = 0
        """Streams not kept (past MAX_STREAMS)."""

    def sample(self, t: float, bot: str, stream: str, sample: Mapping[str, object]) -> None:
        key = (bot, stream)
        s = self.streams.get(key)
        if s is None:
            if len(self.streams) >= MAX_STREAMS:
                self.dropped += 1
                return
            s = self.streams[key] = StreamTimeline(bot, stream)
        s.user = str(sample.get("user") or s.user)
        user_id = sample.get("user_id")
        s.user_id = str(user_id) if user_id is not None else s.user_id
        s.freezes = _int(sample.get("freezes"), s.freezes)
        frozen_s = sample.get("frozen_s")
        s.frozen_s = float(frozen_s) if isinstance(frozen_s, int | float) else s.frozen_s
        ended = bool(sample.get("ended"))
        for name, curve in (("mos", s.mos), ("video_score", s.video_score)):
            value = sample.get(name)
            if isinstance(value, int | float) and not ended:
                _add(curve, (round(t, 3), float(value)))
        for name in BANDS:
            bands = s.bands[name]
            open_band = bool(bands) and bands[-1][1] is None
            on = bool(sample.get(name)) and not ended
            if on and not open_band:
                bands.append([round(t, 3), None])
            elif not on and open_band:
                bands[-1][1] = round(t, 3)
        if ended:
            s.ended_at = round(t, 3)

    def to_list(self, t_end: float) -> list[dict[str, Any]]:
        out = []
        for s in self.streams.values():
            end = s.ended_at if s.ended_at is not None else round(t_end, 3)
            out.append(
                {
                    "bot": s.bot,
                    "stream": s.stream,
                    "user": s.user,
                    "user_id": s.user_id,
                    "freezes": s.freezes,
                    "frozen_s": round(s.frozen_s, 3),
                    "mos": [list(p) for p in s.mos],
                    "video_score": [list(p) for p in s.video_score],
                    "bands": {
                        name: [[a, end if b is None else b] for a, b in bands]
                        for name, bands in s.bands.items()
                    },
                    "ended_at": s.ended_at,
                }
            )
        return out


def _add(curve: list[tuple[float, float]], point: tuple[float, float]) -> None:
    if curve and curve[-1][0] == point[0]:
        curve[-1] = point
        return
    curve.append(point)
    if len(curve) > MAX_POINTS:
        del curve[1:-1:2]


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def svg_quality(index: int, stream: Mapping[str, Any], duration: float) -> str:
    """One stream: MOS (blue) and video score (orange) over 1..5, then one lane per verdict."""
    pw = W - M_LEFT - M_RIGHT
    x_hi = max(duration, 1e-3)
    e = html.escape

    def x(t: float) -> float:
        return M_LEFT + pw * min(max(t, 0.0), x_hi) / x_hi

    def y(score: float) -> float:
        return M_TOP + PLOT_H - PLOT_H * (min(max(score, 1.0), 5.0) - 1) / 4

    parts = [
        f'<svg id="plot-quality-{index}" class="plot quality" xmlns="http://www.w3.org/2000/svg" '
        f'width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" '
        f'aria-label="quality of {e(str(stream["stream"]))} over time">',
        f'<g class="axis"><line x1="{M_LEFT}" y1="{M_TOP}" x2="{M_LEFT}" y2="{M_TOP + PLOT_H}"/>'
        f'<line x1="{M_LEFT}" y1="{M_TOP + PLOT_H}" x2="{M_LEFT + pw}" y2="{M_TOP + PLOT_H}"/>',
    ]
    for score in (1, 2, 3, 4, 5):
        parts.append(f'<text x="{M_LEFT - 6}" y="{y(score) + 4:.1f}" text-anchor="end">{score}</text>')
    parts.append("</g>")
    for name, cls in (("mos", "mos"), ("video_score", "vscore")):
        points = stream[name]
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
        parts.append(f'<polyline class="{cls}" points="{coords}" data-points="{len(points)}"/>')
    lanes_top = M_TOP + PLOT_H + 10
    for i, name in enumerate(BANDS):
        ly = lanes_top + i * LANE_H
        parts.append(
            f'<text x="{M_LEFT - 6}" y="{ly + 10}" text-anchor="end">{name.replace("_", " ")}</text>'
        )
        for a, b in stream["bands"][name]:
            width = max(x(b) - x(a), 2.0)
            parts.append(
                f'<rect class="band {name}" x="{x(a):.1f}" y="{ly}" width="{width:.1f}" '
                f'height="{LANE_H - 3}" data-from="{a}" data-to="{b}">'
                f"<title>{name}: {a:.1f}-{b:.1f} s</title></rect>"
            )
    axis_y = lanes_top + len(BANDS) * LANE_H + 12
    step = _tick_step(x_hi)
    t = 0.0
    while t <= x_hi * (1 + 1e-9):
        parts.append(f'<text x="{x(t):.1f}" y="{axis_y}" text-anchor="middle">{t:g}</text>')
        t += step
    parts.append(f'<text x="{M_LEFT + pw}" y="{axis_y + 12}" text-anchor="end">time since start (s)</text>')
    parts.append("</svg>")
    return "".join(parts)


def _tick_step(span: float) -> float:
    """1, 2 or 5 times a power of ten: about five ticks."""
    raw = span / 5
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def html_section(streams: Sequence[Mapping[str, Any]], duration: float) -> str:
    """The "Stream quality" section (empty when no stream was judged)."""
    if not streams:
        return ""
    e = html.escape
    parts = [
        "<h2>Stream quality</h2>",
        '<p class="meta">MOS <span class="key mos">━</span> and video score '
        '<span class="key vscore">━</span> (1..5); bands: when a verdict was raised.</p>',
    ]
    for i, s in enumerate(streams[:HTML_STREAMS]):
        caption = f"{s['stream']} (by {s['bot']}): {s['freezes']} freezes, {s['frozen_s']:.1f} s frozen"
        parts.append(f"<figure><figcaption>{e(caption)}</figcaption>{svg_quality(i, s, duration)}</figure>")
    if len(streams) > HTML_STREAMS:
        parts.append(
            f'<p class="meta">… and {len(streams) - HTML_STREAMS} more streams in the JSON report</p>'
        )
    return "".join(parts)
