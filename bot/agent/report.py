"""The end-of-run report: JSON for machines, one self-contained HTML page for people.

:class:`RunRecorder` implements ``BotObserver`` and keeps, per bot, the state changes with
their times, the join latency, the outcome, the media totals and the faults it met. At the end
of a run (or on SIGTERM, after the bots left) :meth:`RunRecorder.write_reports` writes
``report.json`` and ``report.html``:

- JSON (``schema: enx-bot.report/1``): ``summary`` (outcomes, join latency percentiles in ms,
  media totals, faults and faults survived), ``bots`` (one entry per bot with its timeline),
  ``rooms``, ``series.in_room`` (``[t_s, bots in a room]`` at every change) and
  ``join_latency_histogram`` (``edges_ms``, ``counts``).
- HTML: the same numbers, a step plot of bots in a room over time and a histogram of join
  latencies, drawn here as inline SVG. No script, no external style sheet, font or image; a
  Content-Security-Policy forbids loading anything, so it renders the same offline.

A fault is a reconnect episode or an audio-only fallback (the bot entered ``reconnecting`` or
``audio-only``); it is survived when the bot came back to ``connected`` afterwards.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .observe import IN_ROOM, BotState, MediaTotals, as_state

SCHEMA = "enx-bot.report/1"
PERCENTILES = (50, 90, 95, 99)
MEDIA_KEYS = ("sent_bytes", "sent_packets", "recv_bytes", "recv_packets", "lost")
FAULT_STATES = frozenset({BotState.RECONNECTING, BotState.AUDIO_ONLY})
OUTCOME_OF_STATE = {
    BotState.LEFT: "completed",
    BotState.FAILED: "join_failed",
    BotState.LOST: "lost",
}


@dataclass
class BotTimeline:
    name: str
    states: list[tuple[float, BotState]] = field(default_factory=list)
    join_latency_s: float | None = None
    outcome: str | None = None
    reason: str = ""
    reconnects: int = 0
    bandwidth_alerts: int = 0
    fallbacks: int = 0
    media: list[int] = field(default_factory=lambda: [0] * len(MEDIA_KEYS))

    @property
    def state(self) -> BotState | None:
        return self.states[-1][1] if self.states else None

    def faults(self) -> tuple[int, int]:
        """(fault episodes, of which survived)."""
        met = survived = 0
        prev: BotState | None = None
        for _, s in self.states:
            if s in FAULT_STATES and prev not in FAULT_STATES:
                met += 1
            if s is BotState.CONNECTED and prev in FAULT_STATES:
                survived += 1
            prev = s
        return met, survived

    def final_outcome(self) -> str:
        if self.outcome:
            return self.outcome
        s = self.state
        if s is None:
            return "not_started"
        return OUTCOME_OF_STATE.get(s, "running")


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile with linear interpolation between closest ranks (numpy's
    default); ``sorted_values`` must be sorted and not empty."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = (len(sorted_values) - 1) * p / 100
    lo = math.floor(rank)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (rank - lo)


def latency_summary(values_ms: Sequence[float]) -> dict[str, float | int | None]:
    vals = sorted(values_ms)
    out: dict[str, float | int | None] = {"count": len(vals)}
    keys = ["min", "mean", *(f"p{p}" for p in PERCENTILES), "max"]
    if not vals:
        return {**out, **dict.fromkeys(keys)}
    out["min"] = round(vals[0], 3)
    out["mean"] = round(sum(vals) / len(vals), 3)
    for p in PERCENTILES:
        out[f"p{p}"] = round(percentile(vals, p), 3)
    out["max"] = round(vals[-1], 3)
    return out


def nice_ceil(x: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is >= x (> 0)."""
    if x <= 0:
        return 1.0
    base = 10.0 ** math.floor(math.log10(x))
    for m in (1, 2, 2.5, 5, 10):
        if m * base >= x * (1 - 1e-12):
            return float(m * base)
    return 10.0 * base


def histogram(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Equal-width bins from 0 to a round number above the largest value: between 5 and 20
    bins (about the square root of the count). No values: no bins."""
    if not values:
        return [], []
    n_bins = min(20, max(5, math.ceil(math.sqrt(len(values)))))
    hi = nice_ceil(max(values))
    width = hi / n_bins
    edges = [round(i * width, 6) for i in range(n_bins + 1)]
    counts = [0] * n_bins
    for v in values:
        counts[min(n_bins - 1, max(0, int(v / width)))] += 1
    return edges, counts


class RunRecorder:
    """Implements ``BotObserver``; ``write_reports(dir)`` at the end."""

    def __init__(
        self,
        target: int = 0,
        meta: Mapping[str, Any] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.target = target
        self.meta = dict(meta or {})
        self._clock = clock
        self._t0 = clock()
        self.started_at = wall()
        self._wall = wall
        self.bots: dict[str, BotTimeline] = {}
        self.rooms: dict[str, dict[str, int]] = {}
        self._media = MediaTotals()
        self._ended: tuple[float, float, str] | None = None  # (t, wall, ended_by)
        self._cause = ""

    def _now(self) -> float:
        return self._clock() - self._t0

    def _bot(self, name: str) -> BotTimeline:
        b = self.bots.get(name)
        if b is None:
            b = self.bots[name] = BotTimeline(name)
        return b

    # ------------------------------------------------------------------ BotObserver

    def bot_state(self, bot: str, state: str) -> None:
        b = self._bot(bot)
        new = as_state(state)
        if b.state is not new:
            b.states.append((self._now(), new))

    def join_latency(self, bot: str, seconds: float) -> None:
        self._bot(bot).join_latency_s = max(0.0, seconds)

    def reconnect(self, bot: str) -> None:
        self._bot(bot).reconnects += 1

    def bandwidth_alert(self, bot: str) -> None:
        self._bot(bot).bandwidth_alerts += 1

    def fallback(self, bot: str) -> None:
        self._bot(bot).fallbacks += 1

    def media(
        self,
        bot: str,
        sent_bytes: int = 0,
        sent_packets: int = 0,
        recv_bytes: int = 0,
        recv_packets: int = 0,
        lost: int = 0,
    ) -> None:
        b = self._bot(bot)
        d = self._media.delta(bot, (sent_bytes, sent_packets, recv_bytes, recv_packets, lost))
        b.media = [a + x for a, x in zip(b.media, d, strict=True)]

    def room_participants(self, room: str, n: int) -> None:
        r = self.rooms.setdefault(room, {"participants": 0, "max_participants": 0})
        r["participants"] = n
        r["max_participants"] = max(r["max_participants"], n)

    def outcome(self, bot: str, outcome: str, reason: str = "") -> None:
        b = self._bot(bot)
        b.outcome, b.reason = outcome, reason
        end_state = {"join_failed": BotState.FAILED, "lost": BotState.LOST}.get(outcome, BotState.LEFT)
        if b.state is not None and b.state is not end_state:
            b.states.append((self._now(), end_state))

    # ------------------------------------------------------------------ the report

    def note_end_cause(self, cause: str) -> None:
        """Why the run is ending, said before it ends (the signal handler: ``SIGTERM``);
        :meth:`finish` records it unless told otherwise."""
        self._cause = self._cause or cause

    def finish(self, ended_by: str | None = None) -> None:
        """Mark the end of the run (the first call counts): ``ended_by`` if given, else the
        noted cause, else ``completed``."""
        if self._ended is None:
            self._ended = (self._now(), self._wall(), ended_by or self._cause or "completed")

    def in_room_series(self, until: float) -> list[tuple[float, int]]:
        """``(t, bots in a room)`` at 0, at every change, and at ``until``."""
        events: list[tuple[float, int]] = []
        for b in self.bots.values():
            was = False
            for t, s in b.states:
                now = s in IN_ROOM
                if now != was:
                    events.append((t, 1 if now else -1))
                was = now
        events.sort()
        series = [(0.0, 0)]
        n = 0
        for t, d in events:
            n += d
            t = round(t, 3)
            if series[-1][0] == t:
                series[-1] = (t, n)
            else:
                series.append((t, n))
        end = round(max(until, series[-1][0]), 3)
        if end > series[-1][0] or len(series) == 1:
            series.append((end, n))
        return series

    def to_dict(self) -> dict[str, Any]:
        t_end, wall_end, ended_by = self._ended or (self._now(), self._wall(), "running")
        bots = []
        outcomes: dict[str, int] = {}
        latencies: list[float] = []
        media_total = [0] * len(MEDIA_KEYS)
        faults_met = faults_survived = reconnects = alerts = fallbacks = 0
        for b in self.bots.values():
            met, survived = b.faults()
            outcome = b.final_outcome()
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if b.join_latency_s is not None:
                latencies.append(b.join_latency_s * 1000)
            media_total = [a + x for a, x in zip(media_total, b.media, strict=True)]
            faults_met += met
            faults_survived += survived
            reconnects += b.reconnects
            alerts += b.bandwidth_alerts
            fallbacks += b.fallbacks
            bots.append(
                {
                    "name": b.name,
                    "outcome": outcome,
                    "reason": b.reason,
                    "state": b.state.value if b.state else None,
                    "join_latency_ms": _ms_of(b.join_latency_s),
                    "media": dict(zip(MEDIA_KEYS, b.media, strict=True)),
                    "faults": {
                        "reconnects": b.reconnects,
                        "bandwidth_alerts": b.bandwidth_alerts,
                        "fallbacks": b.fallbacks,
                        "met": met,
                        "survived": survived,
                    },
                    "timeline": [{"t": round(t, 3), "state": s.value} for t, s in b.states],
                }
            )
        edges, counts = histogram(latencies)
        return {
            "schema": SCHEMA,
            "meta": self.meta,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(wall_end),
            "duration_s": round(t_end, 3),
            "ended_by": ended_by,
            "summary": {
                "target": self.target,
                "bots": len(bots),
                "joined": len(latencies),
                "outcomes": dict(sorted(outcomes.items())),
                "join_latency_ms": latency_summary(latencies),
                "media": dict(zip(MEDIA_KEYS, media_total, strict=True)),
                "faults": {
                    "reconnects": reconnects,
                    "bandwidth_alerts": alerts,
                    "fallbacks": fallbacks,
                    "met": faults_met,
                    "survived": faults_survived,
                },
            },
            "rooms": self.rooms,
            "series": {"in_room": [[t, n] for t, n in self.in_room_series(t_end)]},
            "join_latency_histogram": {"edges_ms": edges, "counts": counts},
            "bots": bots,
        }

    def write_reports(self, directory: str | os.PathLike[str], stem: str = "report") -> tuple[Path, Path]:
        """Write ``{stem}.json`` and ``{stem}.html`` into ``directory`` (created if missing),
        each atomically (a kill mid-write leaves the old file or none). Ends the run if
        :meth:`finish` was not called. Returns both paths."""
        self.finish()
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        data = self.to_dict()
        json_path, html_path = out / f"{stem}.json", out / f"{stem}.html"
        _write_atomic(json_path, json.dumps(data, indent=2) + "\n")
        _write_atomic(html_path, render_html(data))
        return json_path, html_path


def _ms_of(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------------- HTML and SVG

W, H = 640, 280
M_LEFT, M_RIGHT, M_TOP, M_BOTTOM = 56, 16, 16, 44
LINE_COLOUR = "#1f77b4"
BAR_COLOUR = "#2ca02c"


def _fmt(x: float) -> str:
    return f"{x:.4g}" if abs(x) < 1e4 else f"{x:.0f}"


def _step(hi: float, n: int, integer: bool) -> float:
    """A round tick step giving about ``n`` ticks up to ``hi`` (1, 2, 5 x 10^k when integer)."""
    raw = hi / n if hi > 0 else 1.0
    if not integer:
        return nice_ceil(raw)
    if raw <= 1:
        return 1.0
    base = 10.0 ** math.floor(math.log10(raw))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= raw)


def _ticks(hi: float, n: int = 5, integer: bool = False) -> tuple[list[float], float]:
    """Ticks from 0 and the axis top: ``hi`` rounded up to a whole number of steps."""
    step = _step(hi, n, integer)
    count = max(1, math.ceil(hi / step - 1e-9))
    return [i * step for i in range(count + 1)], count * step


def _axes(x_ticks: list[float], y_ticks: list[float], x_label: str, y_label: str) -> list[str]:
    x_hi, y_hi = x_ticks[-1], y_ticks[-1]
    pw, ph = W - M_LEFT - M_RIGHT, H - M_TOP - M_BOTTOM
    out = [
        f'<g class="axis"><line x1="{M_LEFT}" y1="{M_TOP + ph}" x2="{M_LEFT + pw}" y2="{M_TOP + ph}"/>'
        f'<line x1="{M_LEFT}" y1="{M_TOP}" x2="{M_LEFT}" y2="{M_TOP + ph}"/>'
    ]
    for x in x_ticks:
        px = M_LEFT + pw * x / x_hi
        out.append(
            f'<line x1="{px:.1f}" y1="{M_TOP + ph}" x2="{px:.1f}" y2="{M_TOP + ph + 4}"/>'
            f'<text x="{px:.1f}" y="{M_TOP + ph + 16}" text-anchor="middle">{_fmt(x)}</text>'
        )
    for y in y_ticks:
        py = M_TOP + ph - ph * y / y_hi
        out.append(
            f'<line x1="{M_LEFT - 4}" y1="{py:.1f}" x2="{M_LEFT}" y2="{py:.1f}"/>'
            f'<text x="{M_LEFT - 7}" y="{py + 4:.1f}" text-anchor="end">{_fmt(y)}</text>'
        )
    out.append(
        f'<text x="{M_LEFT + pw / 2:.1f}" y="{H - 6}" text-anchor="middle">{html.escape(x_label)}</text>'
        f'<text transform="translate(14 {M_TOP + ph / 2:.1f}) rotate(-90)" text-anchor="middle">'
        f"{html.escape(y_label)}</text></g>"
    )
    return out


def step_points(series: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    """A step function through ``series``: the value holds until the next change."""
    pts: list[tuple[float, float]] = []
    for i, (t, n) in enumerate(series):
        if i:
            pts.append((t, pts[-1][1]))
        pts.append((t, n))
    return pts


def svg_in_room(series: Sequence[Sequence[float]], target: int) -> str:
    pw, ph = W - M_LEFT - M_RIGHT, H - M_TOP - M_BOTTOM
    x_ticks, x_hi = _ticks(max(float(series[-1][0]) if series else 0.0, 1e-3))
    y_ticks, y_hi = _ticks(float(max([1, target, *(int(n) for _, n in series)])), integer=True)
    pts = step_points(series)
    coords = " ".join(f"{M_LEFT + pw * t / x_hi:.1f},{M_TOP + ph - ph * n / y_hi:.1f}" for t, n in pts)
    parts = [
        f'<svg id="plot-in-room" class="plot" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" role="img" aria-label="bots in a room over time" data-points="{len(pts)}">',
        *_axes(x_ticks, y_ticks, "time since start (s)", "bots in a room"),
    ]
    if target:
        ty = M_TOP + ph - ph * target / y_hi
        parts.append(
            f'<line class="target" x1="{M_LEFT}" y1="{ty:.1f}" x2="{M_LEFT + pw}" y2="{ty:.1f}"/>'
            f'<text class="target-label" x="{M_LEFT + pw - 4}" y="{ty - 5:.1f}" text-anchor="end">'
            f"target {target}</text>"
        )
    parts.append(f'<polyline class="series" points="{coords}"/>')
    parts.append("</svg>")
    return "".join(parts)


def svg_histogram(edges: Sequence[float], counts: Sequence[int]) -> str:
    pw, ph = W - M_LEFT - M_RIGHT, H - M_TOP - M_BOTTOM
    head = (
        f'<svg id="plot-join-latency" class="plot" xmlns="http://www.w3.org/2000/svg" width="{W}" '
        f'height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="join latency distribution" '
        f'data-bars="{len(counts)}">'
    )
    if not counts:
        return f'{head}<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no bot joined</text></svg>'
    x_hi = float(edges[-1])
    x_ticks = [x for x in _ticks(x_hi)[0] if x < x_hi * (1 - 1e-9)] + [x_hi]  # end on the last edge
    y_ticks, y_hi = _ticks(float(max(counts)), integer=True)
    parts = [head, *_axes(x_ticks, y_ticks, "join latency (ms)", "bots")]
    for lo, hi, c in zip(edges, edges[1:], counts, strict=False):
        x0 = M_LEFT + pw * lo / x_hi
        bw = pw * (hi - lo) / x_hi
        bh = ph * c / y_hi
        parts.append(
            f'<rect class="bar" x="{x0 + 1:.1f}" y="{M_TOP + ph - bh:.1f}" width="{max(bw - 2, 1):.1f}" '
            f'height="{bh:.1f}" data-count="{c}"><title>{_fmt(lo)}-{_fmt(hi)} ms: {c}</title></rect>'
        )
    parts.append("</svg>")
    return "".join(parts)


STYLE = f"""
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }}
.meta {{ color: #666; margin-bottom: 16px; }}
.cards {{ display: flex; flex-wrap: wrap; gap: 12px; margin-bottom: 20px; }}
.card {{ border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 110px; }}
.card b {{ display: block; font-size: 20px; }}
figure {{ margin: 0 0 24px; }}
figcaption {{ font-weight: 600; margin-bottom: 4px; }}
svg.plot {{ border: 1px solid #eee; background: #fff; }}
svg .axis line {{ stroke: #444; stroke-width: 1; }}
svg .axis text, svg text {{ font-size: 11px; fill: #333; }}
svg .series {{ fill: none; stroke: {LINE_COLOUR}; stroke-width: 2.5; }}
svg .target {{ stroke: #d62728; stroke-width: 1; stroke-dasharray: 5 4; }}
svg .bar {{ fill: {BAR_COLOUR}; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border-bottom: 1px solid #eee; padding: 3px 10px; text-align: right; white-space: nowrap; }}
th:first-child, td:first-child, .text {{ text-align: left; }}
.bad {{ color: #b00; }}
"""

MAX_ROWS = 2000


def _card(label: str, value: object) -> str:
    return f'<div class="card">{html.escape(label)}<b>{html.escape(str(value))}</b></div>'


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f} ms"


def _bytes(n: float) -> str:
    x = float(n)
    for unit in ("B", "kB", "MB"):
        if abs(x) < 1000:
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1000
    return f"{x:.1f} GB"


def render_html(data: Mapping[str, Any]) -> str:
    """The report as one HTML page with inline CSS and SVG (nothing loaded from anywhere)."""
    s = data["summary"]
    lat = s["join_latency_ms"]
    faults = s["faults"]
    outcomes = s["outcomes"]
    e = html.escape
    meta_bits = [
        f"started {e(data['started_at'])}",
        f"{data['duration_s']:.1f} s",
        f"ended: {e(data['ended_by'])}",
    ]
    meta_bits += [f"{e(str(k))}: {e(str(v))}" for k, v in data.get("meta", {}).items()]
    cards = [
        _card("target", s["target"]),
        _card("bots", s["bots"]),
        _card("joined", s["joined"]),
        *(_card(k.replace("_", " "), v) for k, v in outcomes.items()),
        _card("join p50", _ms(lat["p50"])),
        _card("join p95", _ms(lat["p95"])),
        _card("join p99", _ms(lat["p99"])),
        _card("faults survived", f"{faults['survived']}/{faults['met']}"),
        _card("media sent", _bytes(int(s["media"]["sent_bytes"]))),
    ]
    rows = []
    for b in data["bots"][:MAX_ROWS]:
        f = b["faults"]
        bad = ' class="text bad"' if b["outcome"] in ("join_failed", "lost") else ' class="text"'
        rows.append(
            f"<tr><td>{e(b['name'])}</td><td{bad}>{e(b['outcome'])}</td><td>{_ms(b['join_latency_ms'])}</td>"
            f"<td>{f['reconnects']}</td><td>{f['fallbacks']}</td><td>{f['survived']}/{f['met']}</td>"
            f"<td>{_bytes(int(b['media']['sent_bytes']))}</td><td>{b['media']['sent_packets']}</td>"
            f'<td class="text">{e(b["reason"])}</td></tr>'
        )
    more = len(data["bots"]) - MAX_ROWS
    if more > 0:
        rows.append(f'<tr><td colspan="9" class="text">… and {more} more in the JSON report</td></tr>')
    hist = data["join_latency_histogram"]
    pct = " · ".join(f"p{p} {_ms(lat[f'p{p}'])}" for p in PERCENTILES)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>enx-bot run report</title>
<style>{STYLE}</style>
</head>
<body>
<h1>enx-bot run report</h1>
<div class="meta">{" · ".join(meta_bits)}</div>
<div class="cards">{"".join(cards)}</div>
<figure><figcaption>Bots in a room over time</figcaption>
{svg_in_room(data["series"]["in_room"], int(s["target"]))}
</figure>
<figure><figcaption>Join latency ({lat["count"]} bots; {pct})</figcaption>
{svg_histogram(hist["edges_ms"], hist["counts"])}
</figure>
<h2>Bots</h2>
<table>
<thead><tr><th>bot</th><th class="text">outcome</th><th>join</th><th>reconnects</th><th>fallbacks</th>
<th>faults survived</th><th>sent</th><th>packets</th><th class="text">reason</th></tr></thead>
<tbody>
{"".join(rows)}
</tbody>
</table>
</body>
</html>
"""
