"""What we transmit, judged by what the real room server received: ``audio_only``, mute flags
at join, mutes and audio-only mode at run time (no renegotiation), and what the others hear."""

from __future__ import annotations

from typing import Any

import pytest
from rtc_faults import AV, NO_MEDIA, eventually, growth, joined, own_stream, packets

from bot.proto import ErrorCode
from bot.rtc import RoomError
from bot.server import RoomServer

pytestmark = pytest.mark.timeout(60)

IN_FLIGHT_S = 0.3
"""What was already encoded or on the wire when a kind stopped."""


@pytest.fixture
def room_id(room: dict[str, Any]) -> str:
    return str(room["room_id"])


async def test_audio_only_room_publishes_no_video(room_server: RoomServer, room_id: str) -> None:
    watcher, seen = await joined(room_server, room_id, "watcher", NO_MEDIA)
    rtc, rec = await joined(room_server, room_id, "voice", AV, {"audio_only": True})
    await rec.wait_for("on_published_stream")
    added = await seen.wait_for("on_stream_added")
    assert added["audio"] is True and added["video"] is False  # the room sees audio only
    stream = own_stream(room_server, room_id, rtc.client_id)
    assert stream is not None and stream["video"] is False
    await eventually(lambda: packets(room_server, room_id, rtc.client_id, "audio") > 20, what="audio")
    assert packets(room_server, room_id, rtc.client_id, "video") == 0
    assert (await rtc.stats())["publish"]["sending"] == {"audio": True}
    await rtc.disconnect()
    await watcher.disconnect()


async def test_video_muted_at_join_sends_no_video_until_unmuted(
    room_server: RoomServer, room_id: str
) -> None:
    watcher, seen = await joined(room_server, room_id, "watcher", NO_MEDIA)
    rtc, rec = await joined(room_server, room_id, "shy", {**AV, "videoMuted": True})
    await rec.wait_for("on_published_stream")
    muted = await seen.wait_for("on_remote_stream_video_mute")
    assert muted["clientId"] == rtc.client_id
    assert rtc.who_am_i()["videoMuted"] is True
    assert await growth(room_server, room_id, rtc, "audio") > 20
    assert packets(room_server, room_id, rtc.client_id, "video") == 0

    await rtc.mute_self_video(False)
    await seen.wait_for("on_remote_stream_video_unmute", lambda p: p["clientId"] == rtc.client_id)
    await eventually(lambda: packets(room_server, room_id, rtc.client_id, "video") > 10, what="video")
    assert rtc.who_am_i()["videoMuted"] is False
    await rtc.disconnect()
    await watcher.disconnect()


async def test_mutes_stop_and_resume_each_kind_without_renegotiating(
    room_server: RoomServer, room_id: str
) -> None:
    watcher, seen = await joined(room_server, room_id, "watcher", NO_MEDIA)
    rtc, rec = await joined(room_server, room_id, "talker", AV)
    stream_id = (await rec.wait_for("on_published_stream"))["streamId"]
    await eventually(lambda: packets(room_server, room_id, rtc.client_id, "video") > 10, what="video")

    for kind, mute in (("audio", rtc.mute_self_audio), ("video", rtc.mute_self_video)):
        other = "video" if kind == "audio" else "audio"
        await mute(True)
        await seen.wait_for(f"on_remote_stream_{kind}_mute", lambda p: p["clientId"] == rtc.client_id)
        await growth(room_server, room_id, rtc, kind, IN_FLIGHT_S)
        assert await growth(room_server, room_id, rtc, kind) == 0, f"{kind} still flowing"
        assert await growth(room_server, room_id, rtc, other, 0.5) > 0, f"{other} stopped too"
        await mute(False)
        await seen.wait_for(f"on_remote_stream_{kind}_unmute", lambda p: p["clientId"] == rtc.client_id)
        assert await growth(room_server, room_id, rtc, kind) > 0, f"{kind} did not resume"

    # the same stream, the same media leg: nothing was renegotiated
    stream = own_stream(room_server, room_id, rtc.client_id)
    assert stream is not None and stream["id"] == stream_id and stream["state"] == "ready"
    assert rec.names().count("on_published_stream") == 1
    await rtc.disconnect()
    await watcher.disconnect()


async def test_audio_only_mode_stops_video_keeps_audio(room_server: RoomServer, room_id: str) -> None:
    watcher, seen = await joined(room_server, room_id, "watcher", NO_MEDIA)
    rtc, rec = await joined(room_server, room_id, "fallback", AV)
    await rec.wait_for("on_published_stream")
    await eventually(lambda: packets(room_server, room_id, rtc.client_id, "video") > 10, what="video")

    await rtc.set_audio_only_mode(True)
    await seen.wait_for("on_remote_stream_video_mute", lambda p: p["clientId"] == rtc.client_id)
    await growth(room_server, room_id, rtc, "video", IN_FLIGHT_S)
    assert await growth(room_server, room_id, rtc, "video") == 0
    assert await growth(room_server, room_id, rtc, "audio", 0.5) > 0
    assert own_stream(room_server, room_id, rtc.client_id)["video"] is True  # type: ignore[index]

    # a mute of the app's own on top changes nothing the room can see ...
    await rtc.mute_self_video(True)
    await rtc.set_audio_only_mode(False)
    await growth(room_server, room_id, rtc, "video", IN_FLIGHT_S)
    assert await growth(room_server, room_id, rtc, "video", 0.7) == 0
    assert seen.names().count("on_remote_stream_video_mute") == 1
    assert "on_remote_stream_video_unmute" not in seen.names()
    # ... until both let video through again
    await rtc.mute_self_video(False)
    await seen.wait_for("on_remote_stream_video_unmute", lambda p: p["clientId"] == rtc.client_id)
    assert await growth(room_server, room_id, rtc, "video") > 0
    await rtc.set_audio_only_mode(False)  # already off: nothing sent, nothing raised

    await rtc.disconnect()
    await watcher.disconnect()
    with pytest.raises(RoomError) as info:
        await rtc.set_audio_only_mode(True)
    assert info.value.code == ErrorCode.ROOM_NOT_CONNECTED
