"""EnxRtc against the real room server (bot.server) on 127.0.0.1, with real WebRTC media."""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

from bot.proto import ErrorCode, IceServer, mint_token
from bot.rtc import CALLBACK_NAMES, EnxRtc, RoomError
from bot.server import RoomServer

APP_ID = "rtc-tests"
APP_KEY = "rtc-tests-app-key-0123456789abcdef0123"
AV = {"audio": True, "video": True}
NO_MEDIA = {"audio": False, "video": False}

pytestmark = pytest.mark.timeout(60)


class Recorder:
    """Records every callback of one EnxRtc, in order, and lets a test wait for one."""

    def __init__(self, rtc: EnxRtc) -> None:
        self.rtc = rtc
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._changed = asyncio.Event()
        for name in CALLBACK_NAMES:
            setattr(rtc, name, self._recorder(name))

    def _recorder(self, name: str) -> Callable[[dict[str, Any]], None]:
        def record(payload: dict[str, Any]) -> None:
            self.calls.append((name, payload))
            self._changed.set()

        return record

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def payloads(self, name: str) -> list[dict[str, Any]]:
        return [p for n, p in self.calls if n == name]

    async def wait_for(
        self,
        name: str,
        match: Callable[[dict[str, Any]], bool] = lambda p: True,
        within: float = 10.0,
    ) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                for n, payload in self.calls:
                    if n == name and match(payload):
                        return payload
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
def server(room_server: RoomServer) -> RoomServer:
    """conftest's real room server on 127.0.0.1."""
    return room_server


@pytest.fixture
def room_id(room: dict[str, Any]) -> str:
    return str(room["room_id"])


async def joined(
    server: RoomServer, room_id: str, name: str, local_info: dict[str, Any], **kw: Any
) -> tuple[EnxRtc, Recorder]:
    room_info = kw.pop("room_info", None)
    rtc = EnxRtc(label=name, **kw)
    rec = Recorder(rtc)
    await rtc.join_room(server.mint_token(room_id, name=name), local_info, room_info)
    return rtc, rec


def stream_view(server: RoomServer, room_id: str, client_id: str) -> dict[str, Any] | None:
    for p in server.room_view(room_id)["participants"]:
        if p["clientId"] == client_id:
            return p["streams"][0] if p["streams"] else None
    return None


async def eventually(check: Callable[[], bool], within: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------------- the happy path


async def test_two_bots_meet_publish_and_leave(server: RoomServer, room_id: str) -> None:
    b, rec_b = await joined(server, room_id, "bob", NO_MEDIA)
    a_tracks = (AudioStreamTrack(), VideoStreamTrack())
    a, rec_a = await joined(server, room_id, "alice", AV, audio_track=a_tracks[0], video_track=a_tracks[1])

    # alice finds bob in the room; bob sees alice join, then her stream
    connected = rec_a.payloads("on_room_connected")[0]
    assert {u["name"] for u in connected["users"]} == {"alice", "bob"}
    assert connected["me"]["clientId"] == a.client_id and connected["roomId"] == room_id
    joined_b = await rec_b.wait_for("on_user_connected")
    assert joined_b["name"] == "alice" and joined_b["clientId"] == a.client_id

    published = await rec_a.wait_for("on_published_stream")
    stream_id = published["streamId"]
    assert published == {"result": "0", "msg": "success", "streamId": stream_id}
    assert a.published_stream_id == stream_id
    added = await rec_b.wait_for("on_stream_added")
    assert added["id"] == stream_id and added["clientId"] == a.client_id
    assert added["audio"] is True and added["video"] is True
    assert added["attributes"]["name"] == "alice"

    # a third bot: both see it join
    c, rec_c = await joined(server, room_id, "carol", NO_MEDIA)
    for rec in (rec_a, rec_b):
        seen = await rec.wait_for("on_user_connected", lambda p: p["name"] == "carol")
        assert seen["clientId"] == c.client_id
    assert {u["name"] for u in c.get_user_list()} == {"alice", "bob", "carol"}
    assert [s["id"] for s in rec_c.payloads("on_room_connected")[0]["streams"]] == [stream_id]

    # media really flows: the server counts alice's packets and frames, growing
    def received() -> dict[str, Any]:
        view = stream_view(server, room_id, str(a.client_id))
        assert view is not None and view["id"] == stream_id
        return dict(view["received"])

    await eventually(lambda: received()["video"]["frames"] > 5, what="video frames")
    first = received()
    await asyncio.sleep(1.0)
    second = received()
    assert second["video"]["frames"] > first["video"]["frames"]
    assert second["audio"]["packets"] > first["audio"]["packets"] > 0
    assert stream_view(server, room_id, str(a.client_id))["state"] == "ready"  # type: ignore[index]

    # alice leaves: the others see her stream go, then her
    await a.disconnect()
    assert rec_a.names()[-2:] == ["on_unpublished_stream", "on_room_disconnected"]
    assert rec_a.payloads("on_room_disconnected") == [{"cause": 2006, "msg": "normal-disconnect"}]
    assert await a.wait_disconnected() == {"cause": 2006, "msg": "normal-disconnect"}
    for rec in (rec_b, rec_c):
        removed = await rec.wait_for("on_stream_removed")
        left = await rec.wait_for("on_user_disconnected")
        assert removed == {"id": stream_id}
        assert left["clientId"] == a.client_id and left["name"] == "alice"
        names = rec.names()
        assert names.index("on_stream_removed") < names.index("on_user_disconnected")
    # the caller's tracks are the caller's: still live
    assert all(t.readyState == "live" for t in a_tracks)

    await b.disconnect()
    await c.disconnect()
    await a.disconnect()  # idempotent
    assert server.room_view(room_id)["participants"] == []
    for rec in (rec_a, rec_b, rec_c):
        assert not rec.payloads("on_room_error")
        assert rec.names()[0] == "on_room_connected"
        assert rec.names().count("on_room_disconnected") == 1
    for t in a_tracks:
        t.stop()


async def test_room_connected_always_reaches_callbacks_registered_before_join(
    server: RoomServer, room_id: str
) -> None:
    to_connected: list[float] = []
    to_published: list[float] = []
    for i in range(5):
        rtc = EnxRtc(label=f"rc-{i}")
        fired: dict[str, float] = {}
        published = asyncio.Event()

        async def on_connected(payload: dict[str, Any], fired: dict[str, float] = fired) -> None:
            fired["connected"] = time.perf_counter()

        def on_published(
            payload: dict[str, Any], fired: dict[str, float] = fired, done: Any = published
        ) -> None:
            fired["published"] = time.perf_counter()
            done.set()

        rtc.on_room_connected = on_connected
        rtc.on_published_stream = on_published
        token = server.mint_token(room_id, name=f"bot-{i}")
        started = time.perf_counter()
        async with rtc:
            await rtc.join_room(token, AV)
            assert "connected" in fired  # fired before join_room returned
            await asyncio.wait_for(published.wait(), 10)
            own = rtc._publisher.owned_tracks  # silence and black, made by the SDK
        assert len(own) == 2 and all(t.readyState == "ended" for t in own)
        to_connected.append(fired["connected"] - started)
        to_published.append(fired["published"] - started)
    print(
        f"\njoin_room -> room_connected median {statistics.median(to_connected) * 1000:.1f} ms, "
        f"-> published_stream median {statistics.median(to_published) * 1000:.1f} ms "
        f"(loopback, n=5)"
    )
    assert statistics.median(to_connected) < 2.0
    assert statistics.median(to_published) < 5.0
    assert server.room_view(room_id)["participants"] == []


async def test_mute_on_join_and_mute_self(server: RoomServer, room_id: str) -> None:
    b, rec_b = await joined(server, room_id, "watcher", NO_MEDIA)
    a, rec_a = await joined(server, room_id, "muted", {**AV, "audioMuted": True})
    await rec_a.wait_for("on_published_stream")
    # the room hears about the mute after ready, as from the official client
    muted = await rec_b.wait_for("on_remote_stream_audio_mute")
    assert muted["clientId"] == a.client_id

    def received() -> dict[str, Any]:
        view = stream_view(server, room_id, str(a.client_id))
        assert view is not None
        return dict(view["received"])

    await eventually(lambda: received()["video"]["frames"] > 5, what="video frames")
    assert received()["audio"]["packets"] == 0  # muted at join: no audio ever sent

    await a.mute_self_video(True)
    await rec_b.wait_for("on_remote_stream_video_mute", lambda p: p["clientId"] == a.client_id)
    await asyncio.sleep(0.3)  # what was in flight
    frozen = received()["video"]["packets"]
    await asyncio.sleep(0.7)
    assert received()["video"]["packets"] == frozen
    assert a.who_am_i()["videoMuted"] is True

    await a.mute_self_video(False)
    await a.mute_self_audio(False)
    await rec_b.wait_for("on_remote_stream_video_unmute")
    await rec_b.wait_for("on_remote_stream_audio_unmute")
    await eventually(lambda: received()["video"]["packets"] > frozen, what="video resumed")
    await eventually(lambda: received()["audio"]["packets"] > 0, what="audio started")
    await a.mute_self_audio(False)  # already in that state: nothing sent, nothing raised
    await a.disconnect()
    await b.disconnect()
    with pytest.raises(RoomError) as info:
        await a.mute_self_audio(True)
    assert info.value.code == ErrorCode.ROOM_NOT_CONNECTED


async def test_viewer_does_not_publish(server: RoomServer, room_id: str) -> None:
    rtc = EnxRtc(label="viewer")
    rec = Recorder(rtc)
    await rtc.join_room(server.mint_token(room_id, name="v", role="viewer"), AV)
    assert rtc.get_role() == "viewer"
    await asyncio.sleep(0.5)
    assert "on_published_stream" not in rec.names() and not rec.payloads("on_room_error")
    assert stream_view(server, room_id, str(rtc.client_id)) is None
    await rtc.disconnect()


async def test_many_instances_in_one_process(server: RoomServer, room_id: str) -> None:
    bots = [EnxRtc(label=f"m{i}") for i in range(6)]
    recs = [Recorder(b) for b in bots]
    await asyncio.gather(
        *(b.join_room(server.mint_token(room_id, name=f"m{i}"), NO_MEDIA) for i, b in enumerate(bots))
    )
    assert len({b.client_id for b in bots}) == 6
    for rec in recs:
        await eventually(lambda rec=rec: len(rec.rtc.get_user_list()) == 6, what="everyone sees everyone")
    await asyncio.gather(*(b.disconnect() for b in bots))
    assert server.room_view(room_id)["participants"] == []


# --------------------------------------------------------------------------- failures


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def expect_refusal(token: str, code: int, words: str) -> RoomError:
    rtc = EnxRtc(label=f"refused-{code}")
    rec = Recorder(rtc)
    started = time.monotonic()
    with pytest.raises(RoomError) as info:
        await rtc.join_room(token, NO_MEDIA)
    assert time.monotonic() - started < 3
    err = info.value
    assert err.code == code, err
    assert words in err.msg
    assert rec.calls == [("on_room_error", {"result": code, "msg": err.msg})]
    assert rtc.phase == "disconnected"
    assert (await rtc.wait_disconnected())["cause"] == code
    return err


async def test_reused_token_is_refused(server: RoomServer, room_id: str) -> None:
    token = server.mint_token(room_id, name="once")
    rtc = EnxRtc()
    await rtc.join_room(token, NO_MEDIA)
    await rtc.disconnect()
    await expect_refusal(token, ErrorCode.TOKEN_ALREADY_USED, "already used")
    assert server.room_view(room_id)["participants"] == []


async def test_wrongly_signed_token_is_refused(server: RoomServer, room_id: str) -> None:
    forged = mint_token(
        app_key="not-this-servers-key-0123456789abcdef",
        host=f"127.0.0.1:{server.port}",
        room_id=room_id,
        name="forger",
        role="moderator",
        now=time.time(),
    )
    await expect_refusal(forged, ErrorCode.TOKEN_INVALID, "signature")
    assert server.room_view(room_id)["participants"] == []


async def test_token_for_a_room_that_does_not_exist_is_refused(server: RoomServer) -> None:
    token = mint_token(
        app_key=server.app_key,
        host=f"127.0.0.1:{server.port}",
        room_id="no-such-room",
        name="lost",
        role="participant",
        now=time.time(),
    )
    await expect_refusal(token, ErrorCode.ROOM_NOT_FOUND, "room")


async def test_expired_token_is_refused_without_connecting(server: RoomServer, room_id: str) -> None:
    token = mint_token(
        app_key=server.app_key,
        host=f"127.0.0.1:{server.port}",
        room_id=room_id,
        name="late",
        role="participant",
        now=time.time() - 3600,
    )
    await expect_refusal(token, ErrorCode.TOKEN_EXPIRED, "expired")


async def test_garbage_and_truncated_tokens(server: RoomServer, room_id: str) -> None:
    await expect_refusal("garbage!!", ErrorCode.TOKEN_INVALID, "application server")
    good = server.mint_token(room_id, name="cut")
    await expect_refusal(good[: len(good) // 2], ErrorCode.TOKEN_INVALID, "truncated")


async def test_unreachable_host_is_1161_quickly() -> None:
    host = f"127.0.0.1:{_free_port()}"
    token = mint_token(app_key=APP_KEY, host=host, room_id="r", name="n", role="participant", now=time.time())
    err = await expect_refusal(token, ErrorCode.SIGNALLING_CONNECTION_FAILED, host)
    assert "cannot reach" in err.msg


async def test_force_turn_without_turn_fails_fast_with_1160(server: RoomServer, room_id: str) -> None:
    rtc = EnxRtc(label="turnless")
    rec = Recorder(rtc)
    started = time.monotonic()
    await rtc.join_room(server.mint_token(room_id, name="t"), AV, {"forceTurn": True})
    error = await rec.wait_for("on_room_error", within=5)
    assert time.monotonic() - started < 5
    assert error["result"] == ErrorCode.MEDIA_CONNECTION_FAILED
    assert "relay" in error["msg"] and "TURN" in error["msg"]
    assert "on_published_stream" not in rec.names()
    assert rtc.phase == "connected"  # still in the room, without media
    await rtc.disconnect()
    assert server.room_view(room_id)["participants"] == []


async def test_force_turn_with_unreachable_turn_fails_fast() -> None:
    """The room's ICE servers name a TURN server nobody runs: still no relay, still 1160."""
    dead = IceServer(urls=f"turn:127.0.0.1:{_free_port()}", username="u", credential="p")
    async with RoomServer(app_id=APP_ID, app_key=APP_KEY, port=0, ice_servers=[dead]) as srv:
        rid = str(srv.create_room(name="turn")["room_id"])
        rtc = EnxRtc(label="deadturn")
        rec = Recorder(rtc)
        await rtc.join_room(srv.mint_token(rid, name="t"), AV, {"forceTurn": True})
        error = await rec.wait_for("on_room_error", within=15)
        assert error["result"] == ErrorCode.MEDIA_CONNECTION_FAILED
        await rtc.disconnect()


async def test_server_going_away_is_2002() -> None:
    srv = RoomServer(app_id=APP_ID, app_key=APP_KEY, port=0)
    await srv.start()
    try:
        rid = str(srv.create_room(name="doomed")["room_id"])
        rtc = EnxRtc(label="orphan")
        rec = Recorder(rtc)
        await rtc.join_room(srv.mint_token(rid, name="o"), AV, {"allow_reconnect": False})
        await rec.wait_for("on_published_stream")
    finally:
        await srv.aclose()
    payload = await asyncio.wait_for(rtc.wait_disconnected(), 15)
    assert payload == {"cause": 2002, "msg": "unexpected-disconnection"}
    assert rec.payloads("on_room_disconnected") == [payload]
    assert "on_unpublished_stream" not in rec.names()
    await rtc.disconnect()  # a no-op now
    assert rec.names().count("on_room_disconnected") == 1
