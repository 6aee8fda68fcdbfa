"""Sampled decoding on real media: a black source is ``video_black``, a constant picture is
``picture_frozen`` (frames keep arriving), a tone switched to digital silence is
``audio_silent``; each clears when the source is itself again."""

from __future__ import annotations

import time

import pytest
from quality_probe import Monitor, publisher

from bot.server import RoomServer

pytestmark = pytest.mark.timeout(120)

DECODE = {
    "decode_every_s": 1,
    "decode_audio": True,
    "hold_s": 1.5,
    "still_s": 2.5,
    "silence_ms": 1000,
    "freeze_ms": 700,
}


@pytest.mark.slow
async def test_black_still_and_silent_sources(room_server: RoomServer) -> None:
    room_id = room_server.create_room(name="decode")["room_id"]
    async with Monitor(room_server, room_id, DECODE) as mon:
        alice = await publisher(room_server, room_id)
        try:
            await mon.subscribed()
            steady = await mon.stats(lambda e: e.get("luma") is not None and e.get("level_dbfs") is not None)
            assert steady["resolution"] == "320x180" and steady["luma"] > 60, steady
            assert -25 < steady["level_dbfs"] < -10, steady  # a 0.2 full-scale sine: -17 dBFS
            # decoded from samples the lean intake reassembled: not aiortc's path for every frame
            assert mon.bot is not None and mon.bot.rtc is not None
            (leg,) = [sub.leg for sub in mon.bot.rtc._subscriber.legs.values()]
            assert leg.intake is not None and leg.intake.lean_packets > 20
            assert (
                steady["black"] is False and steady["silent"] is False and steady["picture_frozen"] is False
            )

            t = time.monotonic()
            alice.video.black = True
            black = await mon.logs.wait("video_black", "alice", after=t)
            assert black["luma"] < 32 and black["user_id"] == alice.rtc.client_id
            assert black["at"] - t <= 1 + 4, "a sample every second, a keyframe asked for"
            alice.video.black = False
            unblack = await mon.logs.wait("video_unblack", "alice", after=black["at"])
            assert unblack["luma"] > 60

            t = time.monotonic()
            alice.video.constant = 42
            still = await mon.logs.wait("picture_frozen", "alice", after=t, within=20)
            assert still["difference"] is not None and still["difference"] < 0.5
            assert still["at"] - t >= 2.5  # still_s of identical samples
            alice.video.constant = None
            await mon.logs.wait("picture_moving", "alice", after=still["at"])

            t = time.monotonic()
            alice.audio.silent = True
            silent = await mon.logs.wait("audio_silent", "alice", after=t)
            assert silent["level_dbfs"] < -60 and silent["at"] - t >= 0.9
            alice.audio.silent = False
            await mon.logs.wait("audio_resumed", "alice", after=silent["at"])
            last = await mon.stats(lambda e: e["at"] > silent["at"] and e.get("silent") is False)
            assert last["decode_ms"] > 0
        finally:
            await alice.rtc.disconnect()
    # the video never stopped: no freeze, no gap, while the picture was black or still
    for name in ("video_frozen", "audio_gap"):
        assert not mon.logs.named(name), mon.logs.named(name)
    assert len(mon.logs.named("video_black")) == 1 and len(mon.logs.named("audio_silent")) == 1
