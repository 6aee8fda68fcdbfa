"""Bandwidth events (PROTOCOL.md section 7) on the client: what each means (pure decisions, no
network), then end to end through the real room server: its alerts reach the callbacks, and a
PublisherBandwidth cap or stop changes what the server receives."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from rtc_faults import (
    AV,
    NO_MEDIA,
    Recorder,
    TexturedVideo,
    basic_auth,
    eventually,
    growth,
    joined,
    own_stream,
)

from bot.proto import BandwidthEvent, decode_server, encode
from bot.rtc import EnxRtc
from bot.rtc.bandwidth import BandwidthState, CapVideo, HoldVideo, Notify
from bot.server import RoomServer

pytestmark = pytest.mark.timeout(60)


def publisher_bw(message: str, **fields: Any) -> BandwidthEvent:
    return BandwidthEvent(id="publisher-bw", msg={"message": message, **fields})


def bw_alert(*entries: tuple[int, str]) -> BandwidthEvent:
    return BandwidthEvent(
        id="bw-alert",
        msg=[{"streamId": s, "bw": bw, "type": "subscriber", "name": f"s{s}"} for s, bw in entries],
    )


def callbacks(actions: list[Any]) -> list[str]:
    return [a.callback for a in actions if isinstance(a, Notify)]


# --------------------------------------------------------------------------- decisions


def test_subscriber_bandwidth_alert_then_restore() -> None:
    state = BandwidthState()
    alert = state.apply(publisher_bw("SubscriberBandWidth", bandwidth=120))
    assert alert == [Notify("on_room_bandwidth_alert", {"message": "SubscriberBandWidth", "bandwidth": 120})]
    again = state.apply(publisher_bw("SubscriberBandWidth", bandwidth=90))
    assert callbacks(again) == ["on_room_bandwidth_alert"]  # a new figure is news too
    restored = state.apply(publisher_bw("SubscriberBandWidth", bandwidth=480, restored=True))
    assert callbacks(restored) == ["on_room_bandwidth_restored"]
    assert restored[0].payload["bandwidth"] == 480  # type: ignore[union-attr]
    assert state.apply(publisher_bw("SubscriberBandWidth", bandwidth=500, restored=True)) == []


def test_bw_alert_restored_when_every_low_stream_is() -> None:
    state = BandwidthState()
    assert callbacks(state.apply(bw_alert((1, "low"), (2, "low")))) == ["on_bandwidth_updated"]
    assert callbacks(state.apply(bw_alert((1, "restored")))) == ["on_bandwidth_updated"]
    assert callbacks(state.apply(bw_alert((2, "restored")))) == [
        "on_bandwidth_updated",
        "on_room_bandwidth_restored",
    ]
    # a restore of a stream never reported low is only an update
    assert callbacks(state.apply(bw_alert((3, "restored")))) == ["on_bandwidth_updated"]


def test_publisher_bandwidth_caps_stops_and_restores_video() -> None:
    state = BandwidthState()
    assert state.apply(publisher_bw("PublisherBandwidth", bandwidth=300))[:1] == [CapVideo(300)]
    assert state.apply(publisher_bw("PublisherBandwidth", bandwidth=1))[:1] == [HoldVideo(True)]
    resumed = state.apply(publisher_bw("PublisherBandwidth", bandwidth=200))
    assert resumed[:2] == [HoldVideo(False), CapVideo(200)]
    assert state.apply(publisher_bw("PublisherBandwidth", bandwidth=0))[:1] == [CapVideo(None)]
    assert callbacks(resumed) == ["on_bandwidth_updated"]


def test_legacy_events_mean_the_same() -> None:
    state = BandwidthState()
    self_alert = decode_server("onSelfBandwidthAlert", [{"message": "SubscriberBandWidth", "bandwidth": 150}])
    assert callbacks(state.apply(self_alert)) == ["on_room_bandwidth_alert"]  # type: ignore[arg-type]
    low = decode_server("onBandwidthAlert", [[{"streamId": 7, "bw": "low", "type": "subscriber"}]])
    back = decode_server("onBandwidthAlert", [[{"streamId": 7, "bw": "restored", "type": "subscriber"}]])
    assert callbacks(state.apply(low)) == ["on_bandwidth_updated"]  # type: ignore[arg-type]
    assert "on_room_bandwidth_restored" in callbacks(state.apply(back))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- through the server


def participant_sid(server: RoomServer, room_id: str, client_id: str | None) -> str:
    return str(server.rooms.get(room_id).participants[str(client_id)].sid)


async def send_from_server(server: RoomServer, room_id: str, rtc: EnxRtc, event: BandwidthEvent) -> None:
    """The real server's Socket.IO emits the event to ``rtc`` (it has no REST trigger for
    ``PublisherBandwidth``; its own detector sends only the alerts and bw-alert)."""
    name, args = encode(event)
    await server.signalling.sio.emit(name, args[0], to=participant_sid(server, room_id, rtc.client_id))


async def video_kbps(server: RoomServer, room_id: str, rtc: EnxRtc, seconds: float = 1.5) -> float:
    def sent() -> int:
        stream = own_stream(server, room_id, rtc.client_id)
        return 0 if stream is None else int(stream["received"]["video"]["bytes"])

    before = sent()
    await asyncio.sleep(seconds)
    return (sent() - before) * 8 / seconds / 1000


async def test_publisher_bandwidth_caps_then_stops_then_restores_our_video(
    room_server: RoomServer, room: dict[str, Any]
) -> None:
    room_id = str(room["room_id"])
    watcher, seen = await joined(room_server, room_id, "watcher", NO_MEDIA)
    source = TexturedVideo()
    rtc, rec = await joined(room_server, room_id, "capped", AV, video_track=source)
    await rec.wait_for("on_published_stream")
    await asyncio.sleep(1.0)  # the encoder settles
    free = await video_kbps(room_server, room_id, rtc)
    assert free > 300, f"uncapped video only {free:.0f} kbps: the source is too simple to judge"

    await send_from_server(room_server, room_id, rtc, publisher_bw("PublisherBandwidth", bandwidth=120))
    await rec.wait_for("on_bandwidth_updated")
    await asyncio.sleep(0.7)
    capped = await video_kbps(room_server, room_id, rtc)
    assert capped < free * 0.5 and capped < 200, (free, capped)
    assert (await rtc.stats())["publish"]["videoBitrate"] <= 120_000

    await send_from_server(room_server, room_id, rtc, publisher_bw("PublisherBandwidth", bandwidth=1))
    await seen.wait_for("on_remote_stream_video_mute", lambda p: p["clientId"] == rtc.client_id)
    await growth(room_server, room_id, rtc, "video", 0.3)
    assert await growth(room_server, room_id, rtc, "video") == 0
    assert await growth(room_server, room_id, rtc, "audio", 0.5) > 0

    await send_from_server(room_server, room_id, rtc, publisher_bw("PublisherBandwidth", bandwidth=0))
    await seen.wait_for("on_remote_stream_video_unmute", lambda p: p["clientId"] == rtc.client_id)
    await eventually(lambda: (own_stream(room_server, room_id, rtc.client_id) or {}) != {}, what="stream")
    await asyncio.sleep(1.0)
    assert await video_kbps(room_server, room_id, rtc) > capped * 1.5
    await rtc.disconnect()
    await watcher.disconnect()
    source.stop()


async def test_room_bandwidth_alert_and_restore_from_the_server(
    room_server: RoomServer, room: dict[str, Any]
) -> None:
    room_id = str(room["room_id"])
    rtc = EnxRtc(label="alerted")
    rec = Recorder(rtc)
    await rtc.join_room(room_server.mint_token(room_id, name="alerted"), AV)
    await rec.wait_for("on_published_stream")
    if await _post_bandwidth(room_server, room_id, {"client_ids": [rtc.client_id], "bandwidth": 80}) == 404:
        await rtc.disconnect()
        pytest.skip("the room server has no POST /emulator/rooms/{id}/bandwidth yet")
    alert = await rec.wait_for("on_room_bandwidth_alert")
    assert alert["message"] == "SubscriberBandWidth" and alert["bandwidth"] == 80
    await _post_bandwidth(room_server, room_id, {"client_ids": [rtc.client_id], "restored": True})
    restored = await rec.wait_for("on_room_bandwidth_restored")
    assert restored["message"] == "SubscriberBandWidth"
    assert rec.names().index("on_room_bandwidth_alert") < rec.names().index("on_room_bandwidth_restored")
    await rtc.disconnect()


async def _post_bandwidth(server: RoomServer, room_id: str, body: dict[str, Any]) -> int:
    """``POST /emulator/rooms/{room_id}/bandwidth``: the server sends its alert (or restore)
    through the same code path as its own detector. Returns the HTTP status."""
    async with (
        aiohttp.ClientSession(headers=basic_auth(server)) as http,
        http.post(f"{server.url}/emulator/rooms/{room_id}/bandwidth", json=body) as reply,
    ):
        assert reply.status in (200, 404), await reply.text()
        return reply.status
