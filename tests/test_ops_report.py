"""The run report: JSON numbers, and the HTML page rendered by a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from bot.agent.ops.report import RunRecorder
from bot.agent.ops.report_html import step_points
from bot.agent.ops.report_stats import histogram, latency_summary, percentile

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium; .ci/run does)"
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def recorded_run(n: int = 30) -> RunRecorder:
    """``n`` bots joining 0.2 s apart with latencies 10, 20, ... ms; bot 7 fails to join; bot 3
    reconnects and comes back, bot 5 falls back to audio only and comes back, bot 9 loses its
    session; everybody else leaves at t=20 s."""
    clock = FakeClock()
    rec = RunRecorder(
        target=n, meta={"shard_index": 1, "shard_count": 4}, clock=clock, wall=lambda: 1.8e9 + clock.t
    )
    for i in range(n):
        name = f"bot-{i:02d}"
        clock.t = i * 0.2
        rec.bot_state(name, "joining")
        if i == 7:
            clock.t += 0.05
            rec.outcome(name, "join_failed", "room error 4105: room not found")
            continue
        latency = (i + 1) * 0.01
        clock.t += latency
        rec.bot_state(name, "connected")
        rec.join_latency(name, latency)
        rec.media(name, sent_bytes=1000 * i, sent_packets=10 * i)
    clock.t = 10.0
    rec.bot_state("bot-03", "reconnecting")
    rec.reconnect("bot-03")
    rec.reconnect("bot-03")
    clock.t = 11.0
    rec.bot_state("bot-03", "connected")
    rec.media("bot-03", sent_bytes=500, sent_packets=5)  # new peer connection: counts restart
    rec.bandwidth_alert("bot-05")
    rec.fallback("bot-05")
    rec.bot_state("bot-05", "audio-only")
    clock.t = 12.0
    rec.bot_state("bot-05", "connected")
    clock.t = 13.0
    rec.bot_state("bot-09", "reconnecting")
    rec.reconnect("bot-09")
    clock.t = 15.0
    rec.outcome("bot-09", "lost", "reconnect attempts exhausted")
    rec.room_participants("room-a", 28)
    rec.room_participants("room-a", 27)
    clock.t = 20.0
    for i in range(n):
        if i not in (7, 9):
            rec.outcome(f"bot-{i:02d}", "completed", "stay over")
    rec.note_end_cause("SIGTERM")
    rec.finish()
    return rec


# ---------------------------------------------------------------------- numbers


def test_percentiles_interpolate_like_numpy() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 90) == pytest.approx(90.1)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([7.0], 95) == 7.0
    assert percentile([1.0, 2.0], 50) == 1.5
    assert latency_summary([]) == {
        "count": 0,
        "min": None,
        "mean": None,
        "p50": None,
        "p90": None,
        "p95": None,
        "p99": None,
        "max": None,
    }
    edges, counts = histogram([1.0, 2.0, 3.0, 9.9])
    assert edges[0] == 0 and edges[-1] == 10 and len(counts) == 5 and sum(counts) == 4
    assert histogram([]) == ([], [])


def test_report_json(tmp_path: Path) -> None:
    rec = recorded_run()
    json_path, html_path = rec.write_reports(tmp_path)
    assert (json_path.name, html_path.name) == ("report.json", "report.html")
    data = json.loads(json_path.read_text())
    assert data["schema"] == "enx-bot.report/1"
    assert data["meta"] == {"shard_index": 1, "shard_count": 4}
    assert data["duration_s"] == 20.0
    assert data["ended_by"] == "SIGTERM"
    assert data["started_at"].endswith("Z") and data["ended_at"] > data["started_at"]
    s = data["summary"]
    assert (s["target"], s["bots"], s["joined"]) == (30, 30, 29)
    assert s["outcomes"] == {"completed": 28, "join_failed": 1, "lost": 1}
    lat = s["join_latency_ms"]
    joined_ms = sorted((i + 1) * 10.0 for i in range(30) if i != 7)
    assert lat["count"] == 29
    assert lat["min"] == 10.0 and lat["max"] == 300.0
    for p in (50, 90, 95, 99):
        assert lat[f"p{p}"] == pytest.approx(percentile(joined_ms, p), abs=1e-3)
    assert lat["p50"] == 160.0  # the 15th of 29 values
    assert s["faults"] == {"reconnects": 3, "bandwidth_alerts": 1, "fallbacks": 1, "met": 3, "survived": 2}
    assert s["media"]["sent_bytes"] == sum(1000 * i for i in range(30) if i != 7) + 500
    room_a = data["rooms"]["room-a"]  # as our bots saw it; none of ours was said to be in it
    assert (room_a["participants"], room_a["max_participants"], room_a["bots"]) == (27, 28, 0)

    bots = {b["name"]: b for b in data["bots"]}
    assert bots["bot-07"]["outcome"] == "join_failed" and bots["bot-07"]["join_latency_ms"] is None
    assert bots["bot-07"]["reason"] == "room error 4105: room not found"
    assert bots["bot-09"]["outcome"] == "lost"
    assert bots["bot-03"]["faults"] == {
        "reconnects": 2,
        "bandwidth_alerts": 0,
        "fallbacks": 0,
        "met": 1,
        "survived": 1,
    }
    assert [e["state"] for e in bots["bot-03"]["timeline"]] == [
        "joining",
        "connected",
        "reconnecting",
        "connected",
        "left",
    ]
    assert bots["bot-03"]["timeline"][2]["t"] == 10.0
    assert bots["bot-03"]["media"]["sent_bytes"] == 3000 + 500

    series = data["series"]["in_room"]
    assert series[0] == [0.0, 0]
    assert max(n for _, n in series) == 29
    assert series[-1] == [20.0, 0]  # everybody left at the end
    assert [n for t, n in series if t == 10.0] == [28]  # bot-03 reconnecting
    hist = data["join_latency_histogram"]
    assert sum(hist["counts"]) == 29 and len(hist["edges_ms"]) == len(hist["counts"]) + 1


def test_a_report_mid_run_says_running(tmp_path: Path) -> None:
    rec = RunRecorder(target=2)
    rec.bot_state("a", "joining")
    rec.bot_state("a", "connected")
    rec.join_latency("a", 0.01)
    data = rec.to_dict()
    assert data["ended_by"] == "running"
    assert data["bots"][0]["outcome"] == "running"
    # nobody joined: the histogram says so instead of failing
    empty = RunRecorder(target=1)
    _, html_path = empty.write_reports(tmp_path / "nested" / "dir", stem="report-3")
    assert html_path.name == "report-3.html" and "no bot joined" in html_path.read_text()


def test_html_is_self_contained_and_escapes_names(tmp_path: Path) -> None:
    rec = RunRecorder(target=1)
    rec.bot_state("<script>alert(1)</script>", "connected")
    rec.outcome("<script>alert(1)</script>", "completed", "a & b")
    _, html_path = rec.write_reports(tmp_path)
    page = html_path.read_text()
    assert "<script" not in page and "&lt;script&gt;" in page and "a &amp; b" in page
    assert "<link" not in page and "src=" not in page and "url(" not in page and "@import" not in page
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) == {"http://www.w3.org/2000/svg"}
    assert "default-src 'none'" in page  # nothing may be loaded from anywhere


# ---------------------------------------------------------------------- rendered by Chromium

MEASURE = """
<script>
  const box = (el) => { const b = el.getBBox(); return [b.width, b.height]; };
  const out = {};
  const line = document.querySelector('#plot-in-room polyline.series');
  out.points = line ? line.points.numberOfItems : -1;
  out.lineBox = line ? box(line) : null;
  out.bars = Array.from(document.querySelectorAll('#plot-join-latency rect.bar')).map(
    (r) => ({count: Number(r.dataset.count), box: box(r)}));
  out.svgs = Array.from(document.querySelectorAll('svg.plot')).map((s) => {
    const r = s.getBoundingClientRect(); return [s.id, r.width, r.height]; });
  const pre = document.createElement('pre');
  pre.id = 'measured';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
</script>
</body>"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile = tmp_path / "profile"
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


@needs_chromium
def test_chromium_renders_both_plots(tmp_path: Path) -> None:
    """The page's SVG, laid out by Chromium's engine: the step line has one vertex per change
    (two per step), the histogram one bar per bin, and both have a real size on the page."""
    json_path, html_path = recorded_run().write_reports(tmp_path)
    data = json.loads(json_path.read_text())
    # a copy with a measuring script (the report itself has none, and its CSP forbids one)
    page = html_path.read_text()
    page = page.replace("default-src 'none'", "default-src 'none'; script-src 'unsafe-inline'")
    page = page.replace("</body>", MEASURE)
    harness = tmp_path / "measure.html"
    harness.write_text(page)
    dom = chromium(tmp_path, "--dump-dom", harness.as_uri()).stdout
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    measured = json.loads(found.group(1).replace("&quot;", '"'))

    series = data["series"]["in_room"]
    assert measured["points"] == len(step_points(series)) == 2 * len(series) - 1
    assert measured["lineBox"][0] > 500 and measured["lineBox"][1] > 150  # spans the plot
    counts = data["join_latency_histogram"]["counts"]
    assert [b["count"] for b in measured["bars"]] == counts
    for bar in measured["bars"]:
        assert bar["box"][0] > 5
        assert (bar["box"][1] > 0) == (bar["count"] > 0)
    assert [s[0] for s in measured["svgs"]] == ["plot-in-room", "plot-join-latency"]
    assert all(w >= 600 and h >= 250 for _, w, h in measured["svgs"])


@needs_chromium
def test_chromium_screenshot_shows_the_plots(tmp_path: Path) -> None:
    """The report itself (CSP and all), screenshotted: not blank, and the line's and the bars'
    colours are on the page, so the inline styles and SVG really drew."""
    _, html_path = recorded_run().write_reports(tmp_path)
    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=800,1000", html_path.as_uri())
    width, height, pixels = read_png(shot.read_bytes())
    assert (width, height) == (800, 1000)
    colours = {}
    for px in pixels:
        colours[px] = colours.get(px, 0) + 1
    assert len(colours) > 20, "blank screenshot"
    white = colours.get((255, 255, 255), 0)
    assert white < 0.97 * width * height

    def near(target: tuple[int, int, int], tol: int = 12) -> int:
        return sum(
            n for c, n in colours.items() if all(abs(a - b) <= tol for a, b in zip(c, target, strict=True))
        )

    assert near((0x2C, 0xA0, 0x2C)) > 2000, "no histogram bars drawn"  # #2ca02c
    assert near((0x1F, 0x77, 0xB4)) > 300, "no line drawn"  # #1f77b4


def read_png(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """A small PNG decoder (8-bit RGB/RGBA, not interlaced: what Chromium writes): RGB pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    width = height = colour_type = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour_type in (2, 6) and interlace == 0, (depth, colour_type, interlace)
        elif kind == b"IDAT":
            idat += body
    bpp = 4 if colour_type == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    pixels: list[tuple[int, int, int]] = []
    for y in range(height):
        start = y * (stride + 1)
        ftype = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        pixels += [tuple(line[i : i + 3]) for i in range(0, stride, bpp)]  # type: ignore[misc]
        prev = line
    return width, height, pixels
