"""The run report as one HTML page: inline SVG plots drawn here, the page in ``report.html``.

No script, no external style sheet, font or image; the template's Content-Security-Policy
forbids loading anything, so the page renders the same offline. The template is filled with
``string.Template`` (``$name``), so its CSS braces need no escaping.
"""

from __future__ import annotations

import functools
import html
import importlib.resources
import math
import string
from collections.abc import Mapping, Sequence
from typing import Any

from .report_quality import html_section
from .report_stats import PERCENTILES, nice_ceil

W, H = 640, 280
M_LEFT, M_RIGHT, M_TOP, M_BOTTOM = 56, 16, 16, 44
TEMPLATE = "report.html"
_PACKAGE = __name__.rpartition(".")[0]


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
    return _template().substitute(
        meta=" · ".join(meta_bits),
        cards="".join(cards),
        plot_in_room=svg_in_room(data["series"]["in_room"], int(s["target"])),
        joined_count=lat["count"],
        percentiles=pct,
        plot_join_latency=svg_histogram(hist["edges_ms"], hist["counts"]),
        rows="".join(rows),
        sections=_shards_section(data) + _rooms_section(data),
        quality=html_section(data.get("streams") or [], float(data["duration_s"])),
    )


def _shards_section(data: Mapping[str, Any]) -> str:
    """A merged report's shards, and those missing or failed (``enx-bot report merge``)."""
    if "shards" not in data:
        return ""
    e = html.escape
    rows = [
        f'<tr><td>{e(str(s["index"]))}</td><td class="text">{e(str(s["host"]))}</td>'
        f"<td>{s['offset_s']:.1f} s</td><td>{s['bots']}</td><td>{s['joined']}</td>"
        f"<td>{_ms(s['join_p50_ms'])}</td><td>{_ms(s['join_p99_ms'])}</td>"
        f'<td class="text">{e(str(s["ended_by"]))}</td><td class="text">{e(s["file"])}</td></tr>'
        for s in data["shards"]
    ]
    problems = [f"shard {i}: missing (no report)" for i in data.get("missing_shards") or []]
    problems += [f"{f['file']}: {f['error']}" for f in data.get("failed_shards") or []]
    notes = "".join(f'<li class="bad">{e(p)}</li>' for p in problems)
    return (
        f"<h2>Shards ({len(rows)} of {data['meta'].get('shard_count')})</h2>"
        + (f"<ul>{notes}</ul>" if notes else "")
        + '<table><thead><tr><th>shard</th><th class="text">host</th><th>start</th><th>bots</th>'
        '<th>joined</th><th>join p50</th><th>join p99</th><th class="text">ended by</th>'
        '<th class="text">file</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>"
    )


def _rooms_section(data: Mapping[str, Any]) -> str:
    rooms = data.get("rooms") or {}
    if len(rooms) < 2 and "shards" not in data:
        return ""
    e = html.escape
    rows = []
    for room, r in list(rooms.items())[:MAX_ROWS]:
        lat = r.get("join_latency_ms") or {}
        rows.append(
            f'<tr><td class="text">{e(room)}</td><td>{r.get("bots", 0)}</td><td>{r.get("joined", 0)}</td>'
            f"<td>{r.get('max_participants', 0)}</td><td>{_ms(lat.get('p50'))}</td>"
            f"<td>{_ms(lat.get('p99'))}</td></tr>"
        )
    return (
        '<h2>Rooms</h2><table><thead><tr><th class="text">room</th><th>bots</th><th>joined</th>'
        "<th>max participants</th><th>join p50</th><th>join p99</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


@functools.cache
def _template() -> string.Template:
    """``report.html`` beside this module (package data): the page around the numbers."""
    text = importlib.resources.files(_PACKAGE).joinpath(TEMPLATE).read_text(encoding="utf-8")
    return string.Template(text)
