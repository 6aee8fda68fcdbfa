"""Surviving the network (PROTOCOL.md section 8), with real faults: the server closing our
socket (its emulator's drop endpoint), the server process killed (for good, or restarted on the
same port), and the bot's link cut in a network namespace. Timings for many faults are in
bench/reconnect.py; these tests make one to three."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from netlab import netlab
from rtc_faults import (
    AV,
    NO_MEDIA,
    PYTHON,
    ROOT,
    ProbeProcess,
    Recorder,
    ServerProcess,
    basic_auth,
    eventually,
    free_port,
    growth,
    joined,
    packets,
    server_process,
)

from bot.proto import ErrorCode
from bot.rtc import EnxRtc
from bot.server import RoomServer

pytestmark = pytest.mark.timeout(60)

APP_ID = "reconnect-tests"
APP_KEY = "reconnect-tests-app-key-0123456789abcdef"


async def drop(server: RoomServer, room_id: str, client_id: str | None) -> int:
    """``POST /emulator/rooms/{room_id}/clients/{client_id}/drop``: the server closes that
    participant's socket abruptly. Returns the HTTP status."""
    async with (
        aiohttp.ClientSession(headers=basic_auth(server)) as http,
        http.post(f"{server.url}/emulator/rooms/{room_id}/clients/{client_id}/drop") as reply,
    ):
        assert reply.status in (200, 404), await reply.text()
        return reply.status


def bot_participants(server: RoomServer, room_id: str, name: str) -> list[dict[str, Any]]:
    return [p for p in server.room_view(room_id)["participants"] if p["name"] == name]


# --------------------------------------------------------------------------- socket dropped


async def test_dropped_sockets_are_rejoined_and_republished(
    room_server: RoomServer, room: dict[str, Any]
) -> None:
    room_id = str(room["room_id"])
    watcher, seen = await joined(room_server, room_id, "watcher", NO_MEDIA)
    rtc, rec = await joined(room_server, room_id, "bot", AV, {"timeout_interval": 10})
    await rec.wait_for("on_published_stream")
    timings: list[float] = []
    for n in range(1, 4):
        old_client, old_stream = rtc.client_id, rtc.published_stream_id
        mark = len(rec.calls)
        if await drop(room_server, room_id, old_client) == 404:
            await rtc.disconnect()
            await watcher.disconnect()
            pytest.skip("the room server has no POST /emulator/rooms/{id}/clients/{cid}/drop yet")
        fault = time.monotonic()
        success = await rec.wait_for("on_user_reconnect_success", after=mark, within=10)
        timings.append(time.monotonic() - fault)
        assert timings[-1] < 10  # within timeout_interval
        since = rec.calls[mark:]
        names = [name for _, name, _ in since]
        assert names[0] == "on_connection_lost", names
        assert since[0][2]["cause"] == ErrorCode.NETWORK_DISCONNECTED
        assert [p["attempt"] for _, name, p in since if name == "on_reconnect"] == [1]
        assert "on_room_disconnected" not in names and "on_room_error" not in names
        # the room payload, and a new stream (the old one is the server's to clean up)
        assert success["roomId"] == room_id and success["me"]["name"] == "bot"
        assert success["attempt"] == 1 and success["elapsed_ms"] > 0
        assert success["streamId"] not in (None, old_stream)
        assert rtc.published_stream_id == success["streamId"] and rtc.phase == "connected"
        # the server has the bot once, publishing the new stream, and media grows again
        new_stream = success["streamId"]
        await eventually(
            lambda new_stream=new_stream: (
                [s["id"] for p in bot_participants(room_server, room_id, "bot") for s in p["streams"]]
                == [new_stream]
            ),
            what=f"drop {n}: only the new stream on the server",
        )
        assert await growth(room_server, room_id, rtc, "video") > 5
        assert await growth(room_server, room_id, rtc, "audio", 0.5) > 5
    print(
        f"\nsocket drop -> user_reconnect_success: median {statistics.median(timings) * 1000:.0f} ms "
        f"over {len(timings)} drops ({', '.join(f'{t * 1000:.0f}' for t in timings)} ms)"
    )
    # the others still see one bot, with its latest stream
    await seen.wait_for("on_stream_added", lambda p: p["id"] == rtc.published_stream_id)
    assert [u["name"] for u in watcher.get_user_list()].count("bot") == 1
    await rtc.disconnect()
    assert rec.payloads("on_room_disconnected") == [{"cause": 2006, "msg": "normal-disconnect"}]
    await watcher.disconnect()
    assert room_server.room_view(room_id)["participants"] == []


async def test_a_room_that_is_gone_refuses_the_rejoin_1178(
    room_server: RoomServer, room: dict[str, Any]
) -> None:
    room_id = str(room["room_id"])
    rtc, rec = await joined(room_server, room_id, "bot", AV, {"number_of_attempts": 5})
    await rec.wait_for("on_published_stream")
    await room_server.delete_room(room_id)  # closes every socket of the room
    payload = await asyncio.wait_for(rtc.wait_disconnected(), 10)
    assert payload["cause"] == ErrorCode.RECONNECT_REFUSED, payload
    assert str(int(ErrorCode.ROOM_NOT_FOUND)) in payload["msg"]
    assert len(rec.payloads("on_reconnect")) == 1  # a refusal is final: no more attempts
    assert rec.payloads("on_room_disconnected") == [payload]


# --------------------------------------------------------------------------- server killed


async def join_killable(server: ServerProcess, room_info: dict[str, Any]) -> tuple[EnxRtc, Recorder, str]:
    room_id = server.start()
    assert room_id is not None
    rtc = EnxRtc(label="bot")
    rec = Recorder(rtc)
    await rtc.join_room(server.token(room_id, "bot"), AV, room_info)
    await rec.wait_for("on_published_stream")
    return rtc, rec, room_id


@pytest.mark.parametrize(
    ("attempts", "budget_s", "cause"),
    [(3, 10.0, ErrorCode.RECONNECT_ATTEMPTS_EXHAUSTED), (20, 2.5, ErrorCode.RECONNECT_TIMED_OUT)],
    ids=["attempts-exhausted", "budget-spent"],
)
async def test_server_killed_for_good_gives_up(attempts: int, budget_s: float, cause: int) -> None:
    with server_process(port=free_port(), app_id=APP_ID, app_key=APP_KEY) as server:
        rtc, rec, _ = await join_killable(
            server, {"number_of_attempts": attempts, "timeout_interval": budget_s}
        )
        server.kill()
        killed = time.monotonic()
        payload = await asyncio.wait_for(rtc.wait_disconnected(), attempts * budget_s + 5)
        elapsed = time.monotonic() - killed
    assert payload["cause"] == cause, payload
    tried = [p["attempt"] for p in rec.payloads("on_reconnect")]
    assert tried == list(range(1, len(tried) + 1))
    if cause == ErrorCode.RECONNECT_ATTEMPTS_EXHAUSTED:
        assert len(tried) == attempts
        assert "exhausted" in payload["msg"] and "cannot reach" in payload["msg"]
    else:
        assert 1 <= len(tried) < attempts
        assert budget_s - 0.5 < elapsed < budget_s + 2, elapsed
        assert "timed out" in payload["msg"]
    assert elapsed < attempts * budget_s + 2
    names = rec.names()
    assert names[names.index("on_published_stream") + 1] == "on_connection_lost"
    assert names[-1] == "on_room_disconnected" and rec.payloads("on_room_disconnected") == [payload]
    assert "on_user_reconnect_success" not in names
    assert rtc.phase == "disconnected" and (await rtc.stats())["publish"] is None
    await rtc.disconnect()  # a no-op now
    assert rec.names().count("on_room_disconnected") == 1


async def test_without_allow_reconnect_the_first_loss_ends_the_session() -> None:
    with server_process(port=free_port(), app_id=APP_ID, app_key=APP_KEY) as server:
        rtc, rec, _ = await join_killable(server, {"allow_reconnect": False})
        server.kill()
        payload = await asyncio.wait_for(rtc.wait_disconnected(), 5)
    assert payload == {"cause": ErrorCode.UNEXPECTED_DISCONNECT, "msg": "unexpected-disconnection"}
    assert "on_reconnect" not in rec.names() and "on_connection_lost" not in rec.names()
    assert rec.payloads("on_room_disconnected") == [payload]


async def test_disconnect_while_reconnecting_stops_it() -> None:
    with server_process(port=free_port(), app_id=APP_ID, app_key=APP_KEY) as server:
        rtc, rec, _ = await join_killable(server, {"number_of_attempts": 10, "timeout_interval": 30})
        server.kill()
        await rec.wait_for("on_reconnect", within=5)
        assert rtc.phase == "reconnecting"
        await rtc.disconnect()
        assert await rtc.wait_disconnected() == {"cause": 2006, "msg": "normal-disconnect"}
        tried = len(rec.payloads("on_reconnect"))
        await asyncio.sleep(2.5)  # past the next backoff: no further attempt
    assert len(rec.payloads("on_reconnect")) == tried
    assert rec.names()[-1] == "on_room_disconnected"
    assert "on_unpublished_stream" not in rec.names()  # nothing was published any more


async def test_server_restarted_on_the_same_port_is_rejoined(tmp_path: Path) -> None:
    """A restart (graceful stop, new server on the same port and data directory): the new
    server knows the room and the token, so the rejoin is accepted."""
    port = free_port()
    first = RoomServer(app_id=APP_ID, app_key=APP_KEY, port=port, data_dir=tmp_path)
    await first.start()
    room_id = str(first.create_room(name="persistent")["room_id"])
    rtc = EnxRtc(label="bot")
    rec = Recorder(rtc)
    await rtc.join_room(first.mint_token(room_id, name="bot"), AV, {"timeout_interval": 15})
    old_stream = (await rec.wait_for("on_published_stream"))["streamId"]
    await first.aclose()
    stopped = time.monotonic()
    await rec.wait_for("on_connection_lost", within=5)
    await asyncio.sleep(0.8)  # down for a while: an attempt fails meanwhile
    async with RoomServer(app_id=APP_ID, app_key=APP_KEY, port=port, data_dir=tmp_path) as second:
        success = await rec.wait_for("on_user_reconnect_success", within=15)
        print(f"\nserver restart -> user_reconnect_success after {time.monotonic() - stopped:.2f} s")
        assert success["roomId"] == room_id and success["streamId"] != old_stream
        assert [p["attempt"] for p in rec.payloads("on_reconnect")][-1] >= 2
        await eventually(
            lambda: packets(second, room_id, rtc.client_id, "video") > 0, what="media to the new server"
        )
        assert "on_room_disconnected" not in rec.names()
        await rtc.disconnect()


def _serve_options() -> str:
    return subprocess.run(
        [PYTHON, "-m", "bot", "serve", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=20
    ).stdout


async def test_server_killed_and_restarted_on_the_same_port_is_rejoined(tmp_path: Path) -> None:
    if "--data-dir" not in _serve_options():
        pytest.xfail("'enx-bot serve' has no --data-dir yet: a killed server forgets its rooms")
    port = free_port()
    data = ("--data-dir", str(tmp_path))
    first = ServerProcess(port=port, app_id=APP_ID, app_key=APP_KEY)
    second = ServerProcess(port=port, app_id=APP_ID, app_key=APP_KEY)
    try:
        room_id = first.start(extra=data)
        assert room_id is not None
        rtc = EnxRtc(label="bot")
        rec = Recorder(rtc)
        await rtc.join_room(first.token(room_id, "bot"), AV, {"timeout_interval": 15})
        old_stream = (await rec.wait_for("on_published_stream"))["streamId"]
        first.kill()
        killed = time.monotonic()
        await rec.wait_for("on_connection_lost", within=5)
        await asyncio.sleep(0.8)
        second.start(create_room=None, extra=data)
        success = await rec.wait_for("on_user_reconnect_success", within=15)
        print(
            f"\nserver killed + restarted -> user_reconnect_success after {time.monotonic() - killed:.2f} s"
        )
        assert success["roomId"] == room_id and success["streamId"] != old_stream
        assert "on_room_disconnected" not in rec.names()
        await rtc.disconnect()
    finally:
        first.kill()
        second.kill()


# --------------------------------------------------------------------------- link cut (netns)

LAB_PORT = 8443


def _lab_session(lab: Any, room_info: dict[str, Any]) -> tuple[ServerProcess, ProbeProcess]:
    server = ServerProcess(
        port=LAB_PORT,
        app_id=APP_ID,
        app_key=APP_KEY,
        host=lab.server_ip,
        wrap=("ip", "netns", "exec", lab.server_ns),
    )
    room_id = server.start()
    assert room_id is not None
    probe = ProbeProcess(server.token(room_id, "probe"), room_info, wrap=("ip", "netns", "exec", lab.bot_ns))
    probe.wait_event("published_stream", within=20)
    return server, probe


def test_link_cut_shorter_than_the_budget_is_survived() -> None:
    with netlab() as lab:
        server, probe = _lab_session(lab, {"timeout_interval": 10})
        try:
            time.sleep(1.5)  # receiver reports flow
            lab.cut()
            cut = time.monotonic()
            lost_at, lost = probe.wait_event("connection_interrupted", within=5)
            time.sleep(max(0.0, 3.0 - (time.monotonic() - cut)))
            lab.restore()
            restored = time.monotonic()
            back_at, back = probe.wait_event("user_reconnect_success", within=10)
            print(
                f"\nlink cut 3 s: loss noticed after {lost_at - cut:.2f} s, "
                f"reconnected {back_at - restored:.2f} s after the link came back"
            )
            assert lost["cause"] == ErrorCode.NETWORK_DISCONNECTED and "route" in lost["msg"]
            assert "reconnect" in probe.names() and "room_disconnected" not in probe.names()
            assert back["attempt"] == 1 and back["streamId"] is not None
            assert back_at - restored < 3
        finally:
            probe.stop()
            server.kill()


def test_link_cut_longer_than_the_budget_gives_up_cleanly() -> None:
    with netlab() as lab:
        server, probe = _lab_session(lab, {"timeout_interval": 3})
        try:
            time.sleep(1.5)  # receiver reports flow
            lab.cut()
            cut = time.monotonic()
            gone_at, gone = probe.wait_event("room_disconnected", within=10)
            assert gone["cause"] == ErrorCode.RECONNECT_TIMED_OUT, gone
            assert gone_at - cut < 2.5 + 3 + 1  # loss noticed (~2 s) + the budget + margin
            _, exit_line = probe.wait_event("exit", within=5)
            assert exit_line["cause"] == ErrorCode.RECONNECT_TIMED_OUT
            assert probe.proc.wait(5) == 0  # left cleanly
            assert "user_reconnect_success" not in probe.names()
        finally:
            lab.restore()
            probe.stop()
            server.kill()
