"""bot.rtc.signalling over a real Socket.IO socket on 127.0.0.1.

The peer is a bare python-socketio server scripted by each test (not a room server): these tests
pin down the adapter itself: wire shapes of what we emit, ack handling, arrival order, closes.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import socketio
from aiohttp import web

from bot import proto
from bot.proto import ErrorCode
from bot.rtc import RoomError, SignallingError
from bot.rtc.signalling import Inbound, Signalling, SocketClosed


class ScriptedServer:
    def __init__(self) -> None:
        self.sio = socketio.AsyncServer(async_mode="aiohttp")
        self.app = web.Application()
        self.sio.attach(self.app, socketio_path="/v3/socket.io")
        self.runner = web.AppRunner(self.app)
        self.received: list[tuple[str, list[Any]]] = []
        self.url = ""

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await self.runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    srv = ScriptedServer()

    @srv.sio.on("*")
    async def anything(event: str, sid: str, *args: Any) -> Any:
        srv.received.append((event, list(args)))
        if event == "slow":
            await asyncio.sleep(30)
        if event == "publish":
            return {"result": 0, "id": 77}
        if event == "refuse":
            return {"result": 4121, "msg": "no"}
        if event == "burst":
            for i in range(100):
                await srv.sio.emit("user-connected", {"clientId": f"c{i}", "name": f"n{i}"}, to=sid)
            await srv.sio.disconnect(sid)
            return None
        if event in ("signaling_message",):
            return None  # empty ack, as the official server sends
        return {"result": 0, "echo": event}

    await srv.start()
    yield srv
    await srv.stop()


async def connect(url: str, sink: list[Inbound]) -> Signalling:
    sig = Signalling(url, host=url.split("//")[1], sink=sink.append, request_timeout=0.5)
    await sig.connect()
    return sig


async def test_requests_reach_the_server_with_the_official_argument_shapes(
    server: ScriptedServer,
) -> None:
    sig = await connect(server.url, [])
    try:
        assert (await sig.request(proto.GetMaxTalkers())).ok
        publish = proto.PublishRequest(name="x", min_video_bw=1, max_video_bw=2)
        assert (await sig.request(publish)).fields == {"id": 77}
        offer = proto.SignalingMessage(stream_id=5, msg=proto.Offer(sdp="v=0"))
        empty = await sig.request(offer)
        assert empty.ok and empty.fields == {}
        await sig.request(proto.UnpublishRequest(stream_id=5))
        await sig.request(proto.DropRequest())
        await sig.request(proto.SelfMuteRequest(kind="audio", muted=True))
    finally:
        await sig.aclose()
    assert server.received == [
        ("getMaxNumberOfTalker", []),
        ("publish", [proto.encode(publish)[1][0], None]),
        ("signaling_message", [{"streamId": 5, "msg": {"type": "offer", "sdp": "v=0"}}, None]),
        ("unpublish", [5]),
        ("drop", [{"self": True}]),
        ("user-audio-muted", []),
    ]


async def test_refusal_is_an_ack_and_silence_is_an_error(server: ScriptedServer) -> None:
    sig = await connect(server.url, [])
    try:
        refused = await sig.request(proto.UnknownEvent(name="refuse", args=()))
        assert not refused.ok and refused.result == 4121 and refused.msg == "no"
        started = time.monotonic()
        with pytest.raises(SignallingError) as info:
            await sig.request(proto.UnknownEvent(name="slow", args=()))
        assert 0.4 < time.monotonic() - started < 2
        assert info.value.code == ErrorCode.SIGNALLING_CONNECTION_FAILED
        assert "slow" in info.value.msg
    finally:
        await sig.aclose()


async def test_events_arrive_in_order_then_the_close(server: ScriptedServer) -> None:
    sink: list[Inbound] = []
    sig = await connect(server.url, sink)
    try:
        with pytest.raises(SignallingError):  # the server closes instead of acking
            await sig.request(proto.UnknownEvent(name="burst", args=()))
        for _ in range(100):
            if sink and isinstance(sink[-1], SocketClosed):
                break
            await asyncio.sleep(0.02)
    finally:
        await sig.aclose()
    users = [e for e in sink if isinstance(e, proto.UserConnected)]
    assert [u.user.client_id for u in users] == [f"c{i}" for i in range(100)]
    assert isinstance(sink[-1], SocketClosed) and len(sink) == 101
    assert not sig.connected


async def test_our_own_close_is_not_reported(server: ScriptedServer) -> None:
    sink: list[Inbound] = []
    sig = await connect(server.url, sink)
    await sig.aclose()
    await sig.aclose()
    await asyncio.sleep(0.1)
    assert sink == []
    with pytest.raises(SignallingError) as info:
        await sig.request(proto.DropRequest())
    assert info.value.code == ErrorCode.ROOM_NOT_CONNECTED


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{free}",  # connection refused (a port picked when the test runs)
        "http://no-such-host.invalid:443",  # DNS failure
    ],
)
async def test_unreachable_host_is_1161_naming_the_host(url: str) -> None:
    url = url.format(free=_free_port())
    host = url.split("//")[1]
    sig = Signalling(url, host=host, sink=lambda e: None)
    started = time.monotonic()
    with pytest.raises(SignallingError) as info:
        await sig.connect(within=5)
    assert time.monotonic() - started < 5
    assert info.value.code == ErrorCode.SIGNALLING_CONNECTION_FAILED
    assert host in info.value.msg


async def test_silent_host_times_out_with_1161() -> None:
    """A listener that never speaks WebSocket: the connect gives up after ``within``."""
    quiet = socket.socket()
    quiet.bind(("127.0.0.1", 0))
    quiet.listen()
    port = quiet.getsockname()[1]
    try:
        sig = Signalling(f"http://127.0.0.1:{port}", host=f"127.0.0.1:{port}", sink=print)
        started = time.monotonic()
        with pytest.raises(SignallingError) as info:
            await sig.connect(within=0.5)
        assert time.monotonic() - started < 3
        assert f"127.0.0.1:{port}" in info.value.msg
    finally:
        quiet.close()


# --------------------------------------------------------------------------- publication


async def test_a_leg_that_never_gets_ready_is_1160(server: ScriptedServer) -> None:
    """The scripted server acks ``publish`` but never answers the offer."""
    from aiortc.mediastreams import VideoStreamTrack

    from bot.rtc.legs import PublishLeg
    from bot.rtc.publication import LocalPublication

    sig = await connect(server.url, [])
    track = VideoStreamTrack()
    publication = LocalPublication(
        signalling=sig, leg=PublishLeg(tracks={"video": track}), request=proto.PublishRequest()
    )
    started = time.monotonic()
    try:
        with pytest.raises(RoomError) as info:
            await publication.run(within=1.0)
    finally:
        await publication.aclose()
        await sig.aclose()
        track.stop()
    assert time.monotonic() - started < 3
    assert info.value.code == ErrorCode.MEDIA_CONNECTION_FAILED
    assert "not ready within 1 s" in info.value.msg
    assert [name for name, _ in server.received] == ["publish", "signaling_message"]
    assert publication.state == "closed"


async def test_a_leg_failing_while_publishing_is_1160_at_once(server: ScriptedServer) -> None:
    from aiortc.mediastreams import AudioStreamTrack

    from bot.rtc.legs import PublishLeg
    from bot.rtc.publication import LocalPublication

    sig = await connect(server.url, [])
    track = AudioStreamTrack()
    publication = LocalPublication(
        signalling=sig, leg=PublishLeg(tracks={"audio": track}), request=proto.PublishRequest()
    )
    task = asyncio.create_task(publication.run(within=10))
    try:
        for _ in range(100):
            if publication.stream_id is not None:
                break
            await asyncio.sleep(0.02)
        publication.leg_failed("media connection failed (ICE/DTLS)")
        with pytest.raises(RoomError) as info:
            await asyncio.wait_for(task, 2)
    finally:
        await publication.aclose()
        await sig.aclose()
        track.stop()
    assert info.value.code == ErrorCode.MEDIA_CONNECTION_FAILED
    assert "ICE" in info.value.msg
