"""The quality probe's cheap signals on real media through the real room server: a paused
source freezes and resumes, a flapping one gives one event pair, a mute is never a freeze or a
gap; ``receive.quality`` is validated with did-you-mean; the scores' formulas."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from quality_probe import Monitor, publisher

from bot.agent import ConfigError
from bot.agent.config import parse_config
from bot.agent.ops import Metrics, Observers, RunRecorder
from bot.agent.quality import Verdict, audio_mos, video_score
from bot.server import RoomServer

pytestmark = pytest.mark.timeout(90)

QUICK = {"freeze_ms": 500, "gap_ms": 500, "hold_s": 1.5, "window_s": 2}


@pytest.mark.slow
async def test_paused_source_freezes_then_resumes(room_server: RoomServer) -> None:
    room_id = room_server.create_room(name="freeze")["room_id"]
    metrics = Metrics()
    recorder = RunRecorder(target=1)
    async with Monitor(room_server, room_id, QUICK, events=Observers(metrics, recorder)) as mon:
        alice = await publisher(room_server, room_id)
        try:
            await mon.subscribed()
            steady = await mon.stats(lambda e: (e.get("video_fps") or 0) > 10 and e.get("mos") is not None)
            assert 4.0 <= steady["mos"] <= 4.5 and steady["video_score"] >= 4.0, str(steady)
            assert steady["freezes"] == 0 and steady["frozen"] is False
            assert not mon.logs.named("video_frozen") and not mon.logs.named("audio_gap")

            paused = time.monotonic()
            alice.video.paused = True
            frozen = await mon.logs.wait("video_frozen", "alice")
            latency = frozen["at"] - paused
            # freeze_ms, plus frames in flight, plus a tick: generous for a shared machine
            assert 0.4 <= latency <= 0.5 + 1.5, latency
            assert frozen["user_id"] == alice.rtc.client_id and frozen["stream_id"] is not None
            assert not mon.logs.named("audio_gap"), "audio kept flowing"
            await asyncio.sleep(1.0)
            alice.video.paused = False
            resumed_at = time.monotonic()
            resumed = await mon.logs.wait("video_resumed", "alice")
            assert resumed["at"] - resumed_at >= 1.0  # the hold: fine for hold_s first
            assert resumed["freezes"] == 1 and resumed["frozen_s"] >= 1.3, resumed
            later = await mon.stats(lambda e: e["at"] > resumed["at"] and e.get("freezes") == 1)
            assert later["frozen"] is False and later["frozen_s"] >= 1.3
            label = f"monitor/alice#{frozen['stream_id']}"
            value = metrics.registry.get_sample_value
            assert value("enx_stream_freezes_total", {"stream": label}) == 1
            assert value("enx_stream_frozen_seconds_total", {"stream": label}) >= 1.3
            assert 4.0 <= (value("enx_stream_mos", {"stream": label}) or 0) <= 4.5
            assert value("enx_stream_frozen", {"stream": label}) == 0
            assert value("enx_streams_judged") == 1
            (timeline,) = recorder.to_dict()["streams"]  # the run report's timeline of it
            assert timeline["stream"] == f"alice#{frozen['stream_id']}" and timeline["freezes"] == 1
            ((start, end),) = timeline["bands"]["frozen"]
            assert 1.0 <= end - start <= 1.5 + 3.0 and timeline["mos"], timeline

            alice.audio.paused = True
            gap = await mon.logs.wait("audio_gap", "alice")
            assert gap["user"] == "alice"
            alice.audio.paused = False
            await mon.logs.wait("audio_gap_ended", "alice")
        finally:
            await alice.rtc.disconnect()


@pytest.mark.slow
async def test_flapping_stream_gives_one_event_pair(room_server: RoomServer) -> None:
    room_id = room_server.create_room(name="flap")["room_id"]
    quality = {**QUICK, "freeze_ms": 300, "hold_s": 2}
    async with Monitor(room_server, room_id, quality) as mon:
        alice = await publisher(room_server, room_id)
        try:
            await mon.subscribed()
            await mon.stats(lambda e: (e.get("video_fps") or 0) > 10)
            for _ in range(6):  # frozen 0.8 s, moving 0.6 s: faster than the 2 s hold
                alice.video.paused = True
                await asyncio.sleep(0.8)
                alice.video.paused = False
                await asyncio.sleep(0.6)
            await mon.logs.wait("video_resumed", "alice", within=10)
            await asyncio.sleep(1.0)
        finally:
            await alice.rtc.disconnect()
    assert len(mon.logs.named("video_frozen")) == 1, [e["event"] for e in mon.logs.lines]
    assert len(mon.logs.named("video_resumed")) == 1
    resumed = mon.logs.named("video_resumed")[0]
    assert resumed["freezes"] >= 4, resumed  # each freeze still counts, as webrtc-stats counts them


@pytest.mark.slow
async def test_muted_publisher_is_neither_frozen_nor_gapped(room_server: RoomServer) -> None:
    room_id = room_server.create_room(name="mute")["room_id"]
    async with Monitor(room_server, room_id, QUICK) as mon:
        alice = await publisher(room_server, room_id)
        try:
            await mon.subscribed()
            await mon.stats(
                lambda e: (e.get("video_fps") or 0) > 10 and (e.get("audio_bitrate_kbps") or 0) > 0
            )
            await alice.rtc.mute_self_video(True)
            await alice.rtc.mute_self_audio(True)
            await asyncio.sleep(3.0)
            muted = await mon.stats(lambda e: e.get("mos") is None and e.get("video_score") is None, within=5)
            assert muted["frozen"] is False
            await alice.rtc.mute_self_video(False)
            await alice.rtc.mute_self_audio(False)
            await asyncio.sleep(2.5)
        finally:
            await alice.rtc.disconnect()
    for name in ("video_frozen", "audio_gap", "video_fps_low", "quality_degraded"):
        assert not mon.logs.named(name), (name, mon.logs.named(name))


def _quality(quality: Any, **receive: Any) -> Any:
    raw = {
        "token": "t",
        "bots": [{"name": "m", "receive": {"subscribe": "all", "quality": quality, **receive}}],
    }
    return parse_config(raw, {}).bots[0].receive


def test_quality_config_defaults_and_checks() -> None:
    receive = _quality({})
    q = receive.quality
    assert q is not None and q.freeze_ms == 1000 and q.min_mos == 3.5 and q.decode_every_s is None
    assert receive.stats_seconds == 2.0  # scores need statistics
    assert _quality({"hold_s": "2s", "decode_every_s": 2}).quality.hold == 2.0
    with pytest.raises(ConfigError, match="did you mean 'freeze_ms'"):
        _quality({"freez_ms": 100})
    with pytest.raises(ConfigError, match="did you mean 'silence_dbfs'"):
        _quality({"silence_dbf": -50})
    for bad, message in (
        ({"freeze_ms": 0}, "freeze_ms must be more than 0"),
        ({"max_loss": 5}, "fraction of packets"),
        ({"min_mos": 7}, "is a MOS"),
        ({"silence_dbfs": 10}, "dBFS"),
        ({"decode_every_s": 0.01}, "0.5 s or more"),
        ({"max_streams": 0}, "max_streams"),
        ({"freeze_ms": "soon"}, "a number"),
        ({"hold_s": "never"}, "hold_s"),
    ):
        with pytest.raises(ConfigError, match=message):
            _quality(bad)
    with pytest.raises(ConfigError, match="sink: discard"):
        _quality({}, sink="record")


def test_mos_and_video_score() -> None:
    assert audio_mos(0.0) == pytest.approx(4.4, abs=0.05)
    assert audio_mos(0.05) > 3.5 > audio_mos(0.1) > audio_mos(0.2) > 2.0
    assert audio_mos(0.0, jitter_ms=100, rtt_ms=400) < audio_mos(0.0)  # delay costs
    assert audio_mos(1.0) < 1.2  # nothing arrives: about the floor
    assert video_score(15, 360) == pytest.approx(4.15, abs=0.01)
    assert video_score(30, 720) == 4.5
    assert video_score(15, 360, frozen_fraction=0.5) == 1.0
    assert video_score(3) < 3.5 < video_score(10)
    assert video_score(None) == 1.0


def test_verdict_hysteresis() -> None:
    v = Verdict(raise_after=1.0, clear_after=2.0)
    assert v.update(True, 0.0) is None and v.update(True, 0.9) is None
    assert v.update(True, 1.0) == "raised"
    changes = [v.update(t % 1 < 0.5, 1.0 + t / 10) for t in range(1, 40)]  # flapping
    assert "cleared" not in changes and "raised" not in changes
    assert v.update(False, 10.0) is None and v.update(False, 12.0) == "cleared"


def test_metrics_labels_stay_bounded() -> None:
    metrics = Metrics()
    for i in range(250):
        sample = {"mos": 4.2, "video_score": 4.0, "freezes": 1, "frozen_s": 0.5, "frozen": i % 2 == 0}
        metrics.stream_quality("m", f"user{i}#{i}", {**sample, "max_streams": 50})
    text = metrics.render().decode()
    mos_series = [line for line in text.splitlines() if line.startswith("enx_stream_mos{")]
    assert len(mos_series) == 50
    value = metrics.registry.get_sample_value
    assert value("enx_stream_freezes_total", {"stream": "_other"}) == 200
    assert value("enx_stream_freezes_total", {"stream": "m/user0#0"}) == 1
    assert value("enx_streams_judged") == 250 and value("enx_streams_frozen") == 125
    metrics.stream_quality("m", "user0#0", {"freezes": 1, "frozen": True, "ended": True})
    assert value("enx_stream_mos", {"stream": "m/user0#0"}) is None  # its gauges went with it
    assert value("enx_stream_freezes_total", {"stream": "m/user0#0"}) == 1
    assert value("enx_streams_judged") == 249 and value("enx_streams_frozen") == 124
