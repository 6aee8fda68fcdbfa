"""The bandwidth detector does not cry wolf: a publisher's video restarting after a mute is
not a slow link (issue 14: 4). Real bots, real media, on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import structlog.testing
from rtc_faults import AV, TexturedVideo, eventually, joined, packets

from bot.media import ToneAudioTrack
from bot.server import RoomServer

pytestmark = pytest.mark.timeout(150)

CYCLES = 20


async def test_twenty_video_mute_unmute_cycles_on_loopback_give_no_alert(
    room_server: RoomServer, room: dict[str, Any]
) -> None:
    room_id = str(room["room_id"])
    with structlog.testing.capture_logs() as logs:
        rtc, rec = await joined(
            room_server, room_id, "flicker", AV, audio_track=ToneAudioTrack(440), video_track=TexturedVideo()
        )
        await rec.wait_for("on_published_stream")
        await eventually(lambda: packets(room_server, room_id, rtc.client_id, "video") > 50, what="video")
        await asyncio.sleep(3.0)  # a full window of steady video first
        for i in range(CYCLES):
            await rtc.mute_self_video(True)
            await asyncio.sleep(0.7 + 0.1 * (i % 4))
            await rtc.mute_self_video(False)
            await asyncio.sleep(1.0 + 0.15 * (i % 5))
        await asyncio.sleep(3.0)  # the last restart judged over a whole window
        judged = [e for e in logs if e["event"] in ("bandwidth_low", "bandwidth_restored")]
        assert sum(room_server.stats.alerts.values()) == 0 and judged == [], judged
        assert "on_room_bandwidth_alert" not in rec.names()
        publish = room_server.media.publish_leg(room_id, rtc.published_stream_id or 0)
        assert publish is not None and publish.monitor.meters["video"].restarts >= CYCLES
        last = publish.monitor.detector.last
        assert last is not None and last.packets > 100 and last.video_kbps > 30  # judged, not idle
        await rtc.disconnect()
