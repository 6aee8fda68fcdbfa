"""Leaving, losing the network and coming back, against the real server: the official
client's leave order, the fault-injection drop, the reconnection grace period, a restart on
the same data directory, and the ICE servers handed to clients.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog.testing
from aiortc import RTCPeerConnection
from conftest import APP_ID, APP_KEY, RawClient, token_payload
from test_conformance_trace import RECONNECT, Replay, _load, _remote

from bot.proto import ErrorCode
from bot.server import RoomServer, serve

ROOT = Path(__file__).resolve().parents[1]
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{APP_ID}:{APP_KEY}".encode()).decode()}
GRACE_S = 1.5

Connect = Callable[[], Awaitable[RawClient]]
Peer = Callable[[], RTCPeerConnection]
LIFECYCLE = ("user-connected", "user-disconnected", "onAddStream", "onRemoveStream")


@pytest.fixture
async def graceful() -> AsyncIterator[RoomServer]:
    """A room server with a short reconnection grace period."""
    async with RoomServer(APP_ID, APP_KEY, port=0, reconnect_grace_s=GRACE_S) as server:
        yield server


@pytest.fixture
async def clients() -> AsyncIterator[list[RawClient]]:
    made: list[RawClient] = []
    yield made
    for client in made:
        await client.close()


async def _client(server: RoomServer, made: list[RawClient]) -> RawClient:
    client = RawClient()
    await client.connect(server.url)
    made.append(client)
    return client


async def _post(url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, json=body, headers=AUTH if headers is None else headers) as r,
    ):
        return r.status, await r.json(content_type=None)


def _lifecycle(client: RawClient) -> list[tuple[str, Any]]:
    return [(e, a[0] if a else None) for e, a in client.events if e in LIFECYCLE]


async def _eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - polling the server's view
            await asyncio.sleep(0.02)


def _rejoin_fields(room_id: str, old_client_id: str, name: str) -> dict[str, Any]:
    return {
        "isReconnecting": True,
        "reconnectAttempt": 1,
        "oldClientIdForReconnect": old_client_id,
        "room": room_id,
        "role": "participant",
        "name": name,
    }


# --------------------------------------------------------------------------- leave order


async def test_leave_order_of_the_official_client_is_a_normal_unpublish(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect, peer: Peer
) -> None:
    """Peer connections closed first, then unpublish, then drop (PROTOCOL.md section 6)."""
    room_id = room["room_id"]
    alice = await raw_client()
    await alice.join(room_server.mint_token(room_id, "alice"))
    bob = await raw_client()
    await bob.join(room_server.mint_token(room_id, "bob"))
    pc_a, pc_b = peer(), peer()
    first = await alice.publish(pc_a)
    second = await alice.publish(pc_b, video=False)
    await bob.next("onAddStream")
    await bob.next("onAddStream")

    with structlog.testing.capture_logs() as logs:
        # 1: the server sees the DTLS close before the unpublish
        await pc_a.close()
        await _eventually(lambda: first not in room_server.rooms.get(room_id).streams)
        assert await alice.ack("unpublish", first) == {"result": 0}
        # 2: the usual race: unpublish right behind the close
        await pc_b.close()
        assert await alice.ack("unpublish", second) == {"result": 0}
        assert await alice.ack("drop", {"self": True}) == {"result": 0}
        await bob.next("user-disconnected")
    events = [e["event"] for e in logs]
    assert "media_leg_failed" not in events and not [e for e in logs if e["log_level"] == "warning"]
    causes = {e["stream_id"]: e["cause"] for e in logs if e["event"] == "stream_unpublished"}
    assert causes[first] == "peer_closed" and causes[second] in ("peer_closed", "unpublish")
    assert sorted(p["id"] for p in bob.payloads("onRemoveStream")) == [first, second]  # once each
    # a second unpublish of the same stream is still refused
    carol = await raw_client()
    await carol.join(room_server.mint_token(room_id, "carol"))
    assert (await carol.ack("unpublish", first))["result"] == ErrorCode.STREAM_NOT_FOUND


# --------------------------------------------------------------------------- drop and rejoin


async def test_a_dropped_participant_rejoining_within_grace_is_the_same_participant(
    graceful: RoomServer, clients: list[RawClient], peer: Peer
) -> None:
    server = graceful
    room_id = server.create_room("net")["room_id"]
    token = server.mint_token(room_id, "alice")
    alice = await _client(server, clients)
    await alice.join(token)
    old_id = alice.client_id
    assert old_id is not None
    bob = await _client(server, clients)
    await bob.join(server.mint_token(room_id, "bob"))
    old_stream = await alice.publish(peer())
    await bob.next("onAddStream", lambda p: p["id"] == old_stream)
    before = _lifecycle(bob)

    status, reply = await _post(f"{server.url}/emulator/rooms/{room_id}/clients/{old_id}/drop")
    assert (status, reply) == (200, {"result": 0})
    async with asyncio.timeout(3):
        await alice.disconnected.wait()
    # no Socket.IO nor Engine.IO goodbye reached the client: its socket just died
    assert not any(p.packet_type == 1 for p in alice.wire)  # Socket.IO DISCONNECT
    await asyncio.sleep(GRACE_S * 0.6)
    assert _lifecycle(bob) == before  # others see nothing within the grace period
    view = server.room_view(room_id)
    assert [(p["name"], p["connected"]) for p in view["participants"]] == [("alice", False), ("bob", True)]

    again = await _client(server, clients)
    ack, connected = await again.join(token, **_rejoin_fields(room_id, old_id, "alice"))
    assert ack["clientId"] == old_id  # the same participant
    assert {u["name"] for u in connected["userList"]} == {"alice", "bob"}
    assert connected["streams"] == [] and connected["internetDetectionUrl"].endswith("/status")
    new_stream = await again.publish(peer())
    assert new_stream != old_stream
    await bob.next("onAddStream", lambda p: p["id"] == new_stream)
    after = _lifecycle(bob)[len(before) :]
    assert after == [
        ("onRemoveStream", {"id": old_stream}),
        ("onAddStream", bob.payloads("onAddStream")[-1]),
    ]
    assert bob.payloads("onAddStream")[-1]["clientId"] == old_id
    await asyncio.sleep(GRACE_S)  # the grace period is over: nothing more happens
    assert _lifecycle(bob)[len(before) :] == after
    view = server.room_view(room_id)
    alice_view = next(p for p in view["participants"] if p["name"] == "alice")
    assert alice_view["connected"] and [s["id"] for s in alice_view["streams"]] == [new_stream]
    async with aiohttp.ClientSession() as http, http.head(connected["internetDetectionUrl"] + "?rand=7") as r:
        assert r.status == 200  # the official client's network probe


async def test_without_a_rejoin_the_others_hear_of_the_leave_after_the_grace_period(
    graceful: RoomServer, clients: list[RawClient], peer: Peer
) -> None:
    server = graceful
    room_id = server.create_room("net")["room_id"]
    alice = await _client(server, clients)
    await alice.join(server.mint_token(room_id, "alice"))
    bob = await _client(server, clients)
    await bob.join(server.mint_token(room_id, "bob"))
    stream_id = await alice.publish(peer())
    await bob.next("onAddStream")
    assert alice.client_id is not None

    t0 = time.monotonic()
    await server.drop_connection(room_id, alice.client_id)
    left = await bob.next("user-disconnected", within=GRACE_S + 3)
    waited = time.monotonic() - t0
    assert left["clientId"] == alice.client_id
    assert GRACE_S - 0.1 <= waited <= GRACE_S + 1.5, waited
    assert bob.payloads("onRemoveStream") == [{"id": stream_id}]
    names = bob.names()
    assert names.index("onRemoveStream") < names.index("user-disconnected")
    assert [p["name"] for p in server.room_view(room_id)["participants"]] == ["bob"]
    assert server.media.leg_count == 0


async def test_drop_endpoint_needs_auth_and_a_connected_client(
    graceful: RoomServer, clients: list[RawClient]
) -> None:
    server = graceful
    room_id = server.create_room("net")["room_id"]
    alice = await _client(server, clients)
    await alice.join(server.mint_token(room_id, "alice"))
    base = f"{server.url}/emulator/rooms"
    assert (await _post(f"{base}/{room_id}/clients/{alice.client_id}/drop", headers={}))[0] == 401
    assert (await _post(f"{base}/nope/clients/{alice.client_id}/drop"))[0] == 404
    status, reply = await _post(f"{base}/{room_id}/clients/nobody/drop")
    assert status == 404 and reply["result"] == 404 and reply["error"]
    assert (await _post(f"{base}/{room_id}/clients/{alice.client_id}/drop"))[0] == 200
    await _eventually(lambda: not server.room_view(room_id)["participants"][0]["connected"])
    assert (await _post(f"{base}/{room_id}/clients/{alice.client_id}/drop"))[0] == 404  # already away


async def test_reconnect_trace_over_a_real_drop_restores_the_participant(
    graceful: RoomServer, clients: list[RawClient], peer: Peer
) -> None:
    """The official client's own messages of the reconnect recording, with the socket cut by
    the fault endpoint as in the recording (no disconnect packet): the rejoin keeps the
    clientId, the remote user sees the old stream go and the new one come, no leave/join."""
    server = graceful
    room_id = server.create_room("trace")["room_id"]

    async def connect() -> RawClient:
        return await _client(server, clients)

    remote = await _remote(server, room_id, connect)

    class DroppedReplay(Replay):
        async def _new_connection(self, conn: int) -> None:
            if self.client is not None:  # the recorded socket died without a goodbye
                await server.drop_connection(self.room_id, self.client_ids[-1])
                async with asyncio.timeout(3):
                    await self.client.disconnected.wait()
                for pc in self.legs.values():  # its peer connections go too
                    await pc.close()
                self.legs.clear()
            self.client = await self.connect()
            self.conn = conn

    replay = DroppedReplay(_load(RECONNECT), server, room_id, connect, peer, remote)
    await replay.run()

    first, second = replay.client_ids
    assert first == second
    await remote.next("user-disconnected", lambda p: p["clientId"] == first)  # the final drop
    old, new = replay.ids[1001], replay.ids[1002]
    seen = [(e, p.get("id") if isinstance(p, dict) else None) for e, p in _lifecycle(remote)]
    assert seen == [
        ("user-connected", None),
        ("onAddStream", old),
        ("onRemoveStream", old),
        ("onAddStream", new),
        ("onRemoveStream", new),
        ("user-disconnected", None),
    ]


# --------------------------------------------------------------------------- persistence


async def test_a_restarted_server_keeps_rooms_and_accepts_the_rejoin(tmp_path: Path, peer: Peer) -> None:
    data = tmp_path / "data"
    first = RoomServer(APP_ID, APP_KEY, port=0, data_dir=data)
    await first.start()
    port = first.port
    room_id = first.create_room("durable", settings={"quality": "HD"})["room_id"]
    token = first.mint_token(room_id, "alice")
    alice = RawClient()
    await alice.connect(first.url)
    old_ack, _ = await alice.join(token)
    stream_id = await alice.publish(peer())
    await first.aclose()
    async with asyncio.timeout(5):
        await alice.disconnected.wait()
    assert (data / "rooms.sqlite3").is_file()

    async with RoomServer(APP_ID, APP_KEY, port=port, data_dir=data) as second:
        async with aiohttp.ClientSession() as http, http.get(f"{second.api_url}/rooms", headers=AUTH) as r:
            rooms = (await r.json())["rooms"]
        assert [(x["room_id"], x["name"], x["settings"]["quality"]) for x in rooms] == [
            (room_id, "durable", "HD")
        ]

        reused = RawClient()
        await reused.connect(second.url)
        try:  # single use survives the restart
            assert (await reused.ack("token", token_payload(token)))["result"] == ErrorCode.TOKEN_ALREADY_USED
        finally:
            await reused.close()

        again = RawClient()
        await again.connect(second.url)
        try:
            ack, connected = await again.join(token, **_rejoin_fields(room_id, old_ack["clientId"], "alice"))
            assert ack["clientId"] != old_ack["clientId"]  # nobody to spare a flicker: a fresh join
            assert [u["name"] for u in connected["userList"]] == ["alice"]
            assert await again.publish(peer()) > stream_id  # stream ids are never reused
        finally:
            await again.close()


@pytest.mark.parametrize("data_dir", [None, ":memory:"])
async def test_an_in_memory_server_forgets_everything(data_dir: str | None) -> None:
    async with RoomServer(APP_ID, APP_KEY, port=0, data_dir=data_dir) as first:
        port = first.port
        room_id = first.create_room("fleeting")["room_id"]
        token = first.mint_token(room_id, "alice")
        assert first.store.path is None
    async with RoomServer(APP_ID, APP_KEY, port=port, data_dir=data_dir) as second:
        assert len(second.rooms) == 0
        client = RawClient()
        await client.connect(second.url)
        try:
            reply = await client.ack("token", token_payload(token))
            assert reply["result"] == ErrorCode.ROOM_NOT_FOUND
        finally:
            await client.close()


# --------------------------------------------------------------------------- ICE servers


async def test_ice_servers_reach_room_connected_and_credentials_never_reach_the_logs() -> None:
    stun = {"urls": "stun:stun.example.org:3478"}
    turn = {"urls": "turn:10.9.8.7:3478", "username": "bot", "credential": "s3cr3t-turn-credential"}
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(serve("127.0.0.1", 0, APP_ID, APP_KEY, "ice", ice_servers=[stun, turn]))
        try:
            async with asyncio.timeout(5):
                while not any(e["event"] == "server_started" for e in logs):  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            started = next(e for e in logs if e["event"] == "server_started")
            async with aiohttp.ClientSession() as http:
                url = f"{started['api_url']}/rooms/{started['room_id']}/tokens"
                async with http.post(url, json={"name": "a", "role": "participant"}, headers=AUTH) as r:
                    token = (await r.json())["token"]
            client = RawClient()
            await client.connect(started["url"])
            try:
                _, connected = await client.join(token)
            finally:
                await client.close()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert connected["iceServers"] == [stun, turn]
    assert "turn:10.9.8.7:3478 (user bot, credential ***)" in started["ice_servers"]
    assert "s3cr3t-turn-credential" not in repr(logs)


def test_serve_cli_takes_ice_servers_from_flags_and_env_without_logging_the_credential(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENX_")}
    env.update(
        ENX_TURN_CREDENTIAL="env-turn-secret-42", ENX_STUN_URL="stun:127.0.0.1:3478", PYTHONUNBUFFERED="1"
    )
    argv = [sys.executable, "-m", "bot", "serve", "--port", "0", "--app-id", APP_ID, "--app-key", APP_KEY]
    argv += ["--turn", "turn:127.0.0.1:3478", "--turn-username", "bot", "--log-format", "json"]
    argv += ["--data-dir", str(tmp_path / "d")]
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert '"server_started"' in line, line
        assert "turn:127.0.0.1:3478 (user bot, credential ***)" in line and "stun:127.0.0.1:3478" in line
        assert str(tmp_path / "d" / "rooms.sqlite3") in line
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0].decode()
    assert proc.returncode == 0
    assert "env-turn-secret-42" not in line + out

    bad = subprocess.run(
        [*argv[:10], "--turn", "turn:127.0.0.1:3478", "--data-dir", ":memory:"],
        env={k: v for k, v in os.environ.items() if not k.startswith("ENX_")},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "--turn-username" in bad.stderr and "Traceback" not in bad.stderr


# --------------------------------------------------------------------------- participant phases


async def test_participant_phases_follow_the_table_and_an_illegal_move_raises(
    graceful: RoomServer, clients: list[RawClient]
) -> None:
    """joined -> away (socket cut) -> joined (rejoin, same object) -> left (drop); the presence
    code moves each participant's machine, so an impossible order raises PhaseError and
    changes nothing."""
    from bot.proto import ParticipantPhase, PhaseError, Trigger

    server = graceful
    presences = server.signalling.presences
    room_id = server.create_room("phases")["room_id"]
    room = server.rooms.get(room_id)
    token = server.mint_token(room_id, "alice")
    alice = await _client(server, clients)
    await alice.join(token)
    old_id = str(alice.client_id)
    participant = room.participants[old_id]
    assert participant.phase.phase is ParticipantPhase.JOINED and not participant.away
    with pytest.raises(PhaseError, match="can't handle GRACE_EXPIRED when role=participant and phase=joined"):
        await presences.depart(room, participant, cause="grace_expired", trigger=Trigger.GRACE_EXPIRED)
    assert room.participants[old_id] is participant  # nothing moved

    status, _ = await _post(f"{server.url}/emulator/rooms/{room_id}/clients/{old_id}/drop")
    assert status == 200
    await _eventually(lambda: participant.away)
    assert participant.phase.phase is ParticipantPhase.AWAY and participant.sid == ""
    grace = presences.of(room, participant).grace
    with pytest.raises(PhaseError, match="can't handle DROPPED when role=participant and phase=away"):
        presences.hold(room, participant, reason="twice")
    assert presences.of(room, participant).grace is grace and participant.away

    again = await _client(server, clients)
    ack, _ = await again.join(token, **_rejoin_fields(room_id, old_id, "alice"))
    assert ack["clientId"] == old_id and room.participants[old_id] is participant
    assert participant.phase.phase is ParticipantPhase.JOINED and participant.sid

    assert await again.ack("drop", {"self": True}) == {"result": 0}
    await _eventually(lambda: old_id not in room.participants)
    assert participant.phase.phase is ParticipantPhase.LEFT
    with pytest.raises(PhaseError):
        presences.hold(room, participant, reason="gone")


async def test_a_rejoin_on_a_socket_that_still_looks_alive_takes_the_participant_over(
    graceful: RoomServer, clients: list[RawClient]
) -> None:
    """The client saw the loss before the server: the old socket is dropped by the server
    and the new one rejoins (DROPPED then REJOINED), same clientId."""
    from bot.proto import ParticipantPhase

    server = graceful
    room_id = server.create_room("takeover")["room_id"]
    token = server.mint_token(room_id, "alice")
    alice = await _client(server, clients)
    await alice.join(token)
    old_id = str(alice.client_id)
    participant = server.rooms.get(room_id).participants[old_id]
    again = await _client(server, clients)
    ack, _ = await again.join(token, **_rejoin_fields(room_id, old_id, "alice"))
    assert ack["clientId"] == old_id and participant.phase.phase is ParticipantPhase.JOINED
    async with asyncio.timeout(3):
        await alice.disconnected.wait()  # the server closed the old socket
    await asyncio.sleep(0.2)
    assert participant.phase.phase is ParticipantPhase.JOINED and not participant.away
