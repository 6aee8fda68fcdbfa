"""The report's per-stream quality timeline: JSON bands and curves from what the probe said,
and the HTML drawn by a real headless Chromium (bands where the verdicts were raised)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from test_ops_report import FakeClock, chromium, needs_chromium, read_png

from bot.agent.ops.report import RunRecorder
from bot.agent.ops.report_quality import MAX_POINTS, QualityTimelines


def quality_run() -> RunRecorder:
    """One monitor judging alice for 20 s: frozen 4-7 s, black 10-12 s, silent 14-16 s,
    degraded 6-9 s (MOS 2.5 then), the stream ended at 18 s; bob judged from 2 s, never bad."""
    clock = FakeClock()
    rec = RunRecorder(target=1, clock=clock, wall=lambda: 1.8e9 + clock.t)
    rec.bot_state("monitor", "connected")
    flags = {"frozen": (4, 7), "black": (10, 12), "silent": (14, 16), "degraded": (6, 9)}
    for step in range(0, 37):
        clock.t = step * 0.5
        sample: dict[str, Any] = {name: a <= clock.t < b for name, (a, b) in flags.items()}
        sample.update(
            user="alice",
            user_id="c1",
            mos=2.5 if 6 <= clock.t < 9 else 4.4,
            video_score=1.0 if 4 <= clock.t < 7 else 4.15,
            freezes=0 if clock.t < 4 else 1,
            frozen_s=min(max(clock.t - 4, 0), 3),
        )
        rec.stream_quality("monitor", "alice#1", sample)
        if clock.t >= 2:
            rec.stream_quality("monitor", "bob#2", {"user": "bob", "mos": 4.4, "video_score": 4.15})
    rec.stream_quality("monitor", "alice#1", {"user": "alice", "ended": True, "freezes": 1, "frozen_s": 3})
    clock.t = 20.0
    rec.outcome("monitor", "completed", "stay over")
    rec.finish()
    return rec


def test_report_json_has_the_timeline(tmp_path: Path) -> None:
    json_path, _ = quality_run().write_reports(tmp_path)
    streams = {s["stream"]: s for s in json.loads(json_path.read_text())["streams"]}
    alice = streams["alice#1"]
    assert alice["bands"]["frozen"] == [[4.0, 7.0]] and alice["bands"]["black"] == [[10.0, 12.0]]
    assert alice["bands"]["silent"] == [[14.0, 16.0]] and alice["bands"]["degraded"] == [[6.0, 9.0]]
    assert alice["bands"]["picture_frozen"] == [] and alice["ended_at"] == 18.0
    assert alice["freezes"] == 1 and alice["frozen_s"] == 3 and alice["user_id"] == "c1"
    assert len(alice["mos"]) == 37 and min(v for _, v in alice["mos"]) == 2.5
    assert streams["bob#2"]["bands"]["frozen"] == [] and streams["bob#2"]["ended_at"] is None


def test_timeline_stays_bounded() -> None:
    q = QualityTimelines()
    for i in range(5 * MAX_POINTS):
        q.sample(i * 0.1, "m", "s#1", {"mos": 4.0, "frozen": i % 2 == 0})
    (s,) = q.to_list(1e6)
    assert len(s["mos"]) <= MAX_POINTS and s["mos"][0][0] == 0.0
    for i in range(300):
        q.sample(0, "m", f"x#{i}", {"mos": 4.0})
    assert len(q.streams) == 200 and q.dropped == 101


MEASURE = """
<script>
  const out = {};
  out.svgs = Array.from(document.querySelectorAll('svg.quality')).map((s) => {
    const r = s.getBoundingClientRect(); return [s.id, r.width, r.height]; });
  out.bands = Array.from(document.querySelectorAll('#plot-quality-0 rect.band')).map((r) => {
    const b = r.getBBox(); return [r.classList[1], b.x, b.width]; });
  out.mos = document.querySelector('#plot-quality-0 polyline.mos').points.numberOfItems;
  out.vscore = document.querySelector('#plot-quality-0 polyline.vscore').getBBox().height;
  const pre = document.createElement('pre');
  pre.id = 'measured';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
</script>
</body>"""


@needs_chromium
def test_chromium_draws_the_quality_timeline(tmp_path: Path) -> None:
    _, html_path = quality_run().write_reports(tmp_path)
    page = html_path.read_text()
    assert "<script" not in page and "Stream quality" in page
    page = page.replace("default-src 'none'", "default-src 'none'; script-src 'unsafe-inline'")
    harness = tmp_path / "measure.html"
    harness.write_text(page.replace("</body>", MEASURE))
    dom = chromium(tmp_path, "--dump-dom", harness.as_uri()).stdout
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    measured = json.loads(found.group(1).replace("&quot;", '"'))
    assert [s[0] for s in measured["svgs"]] == ["plot-quality-0", "plot-quality-1"]
    assert all(w >= 600 and h >= 200 for _, w, h in measured["svgs"])
    bands = {name: (x, width) for name, x, width in measured["bands"]}
    assert set(bands) == {"frozen", "black", "silent", "degraded"}
    # the plot is 528 px wide for 20 s: 26.4 px a second
    assert abs(bands["frozen"][1] - 3 * 26.4) < 2 and abs(bands["black"][1] - 2 * 26.4) < 2
    assert bands["frozen"][0] < bands["degraded"][0] < bands["black"][0] < bands["silent"][0]
    assert measured["mos"] == 37 and measured["vscore"] > 80  # the video score drops to 1 and back

    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=800,1400", html_path.as_uri())
    _, _, pixels = read_png(shot.read_bytes())
    colours: dict[tuple[int, int, int], int] = {}
    for px in pixels:
        colours[px] = colours.get(px, 0) + 1

    def near(target: tuple[int, int, int], tol: int = 12) -> int:
        return sum(
            n for c, n in colours.items() if all(abs(a - b) <= tol for a, b in zip(c, target, strict=True))
        )

    assert near((0x94, 0x67, 0xBD)) > 500, "no frozen band drawn"  # #9467bd
    assert near((0xFF, 0x7F, 0x0E)) > 200, "no video score drawn"  # #ff7f0e
