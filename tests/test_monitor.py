"""The monitoring bot end to end: ``configs/monitor.yaml`` as a real process logs
``stream_stats`` for a real publisher's stream."""

from __future__ import annotations

import asyncio

import pytest
from test_recorder import BotProcess, _publisher

from bot.server import RoomServer


@pytest.mark.slow
async def test_monitor_logs_stream_stats(room_server: RoomServer) -> None:
    room_id = room_server.create_room(name="monitor")["room_id"]
    token = room_server.mint_token(room_id, name="monitor", role="participant", user_ref="mon")
    mon = await BotProcess.start("configs/monitor.yaml", {"ENX_TOKEN": token, "ENX_STATS_INTERVAL": "2"})
    alice = None
    try:
        await mon.wait_for("room_connected")
        alice, _ = await _publisher(room_server, room_id, "alice")
        await mon.wait_for("subscribed_stream", lambda e: e.get("user") == "alice")
        await asyncio.sleep(6.5)
        await alice.disconnect()
        alice = None
        await mon.wait_for("user_disconnected", lambda e: e.get("user") == "alice")
    finally:
        if alice is not None:
            await alice.disconnect()
        code = await mon.stop()
    assert code == 0, mon.stderr.decode()[-2000:]
    stats = [e for e in mon.events if e["event"] == "stream_stats" and e.get("user") == "alice"]
    assert len(stats) >= 3, stats
    for line in stats:
        for kind in ("video", "audio"):
            for key in (
                "bitrate_kbps",
                "packets_received",
                "packets_lost",
                "fraction_lost",
                "jitter_ms",
                "rtt_ms",
            ):
                assert f"{kind}_{key}" in line, (kind, key, line)
        assert {"video_fps", "video_keyframes", "video_frames", "stream_id", "user_id"} <= set(line)
    steady = stats[1:]  # the first sample of a leg has no rates yet
    assert all(s["video_bitrate_kbps"] > 0 and s["audio_bitrate_kbps"] > 0 for s in steady), steady
    assert all(12 <= s["video_fps"] <= 17 for s in steady), [s["video_fps"] for s in steady]
    assert all(s["video_keyframes"] >= 1 and s["video_packets_lost"] == 0 for s in steady), steady
    assert all(s["video_jitter_ms"] is not None for s in steady), steady
    # the quality probe (configs/monitor.yaml turns it on): scores, a sampled picture, the level
    assert all(4.0 <= s["mos"] <= 4.5 and s["video_score"] >= 3.5 for s in steady), steady
    assert all(s["frozen"] is False and s["freezes"] == 0 and s["silent"] is False for s in steady)
    assert steady[-1]["resolution"] == "320x180" and -25 < steady[-1]["level_dbfs"] < -10, steady[-1]
    assert not {"video_frozen", "video_black", "audio_silent", "quality_degraded"} & set(mon.names())
    names = mon.names()
    assert "user_connected" in names and "user_disconnected" in names
    assert "published_stream" not in names
