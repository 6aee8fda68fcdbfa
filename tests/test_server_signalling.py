"""Socket.IO signalling and media legs of the room server, driven by bare clients.

Real sockets on 127.0.0.1, a raw python-socketio client per participant and real aiortc
peers publishing aiortc's test tracks; nothing is mocked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from conftest import APP_ID, APP_KEY, RawClient
from socketio import packet as sio_packet  # type: ignore[import-untyped]

from bot.proto import ErrorCode
from bot.server import RoomServer

Connect = Callable[[], Awaitable[RawClient]]
Peer = Callable[[], RTCPeerConnection]


async def _joined(
    room_server: RoomServer, room: dict[str, Any], connect: Connect, name: str, role: str = "participant"
) -> RawClient:
    client = await connect()
    await client.join(room_server.mint_token(room["room_id"], name=name, role=role))
    return client


def _stream(view: dict[str, Any], stream_id: int) -> dict[str, Any]:
    for p in view["participants"]:
        for s in p["streams"]:
            if s["id"] == stream_id:
                return dict(s)
    raise AssertionError(f"stream {stream_id} not in the room view")


async def _eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - polling the server's view, nothing to await
            await asyncio.sleep(0.05)


# --------------------------------------------------------------------------- joining


async def test_token_ack_goes_out_before_room_connected_with_every_required_field(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    alice = await raw_client()
    ack, connected = await alice.join(room_server.mint_token(room["room_id"], name="alice", role="moderator"))

    # on the wire: the token ack (ACK id 0) strictly before the room-connected EVENT
    kinds = [
        ("ack" if p.packet_type == sio_packet.ACK else p.data[0])
        for p in alice.wire
        if p.packet_type in (sio_packet.ACK, sio_packet.EVENT)
    ]
    assert kinds[:2] == ["ack", "room-connected"], kinds

    assert set(ack) == {"result", "clientId", "connectedIP"}
    assert ack["connectedIP"] == "127.0.0.1"
    for key in ("room", "videoBitrateQualityMap", "user", "videoMutedUsers"):
        assert key in connected, key
    assert connected["room"]["settings"]["quality"] == "SD"
    assert connected["room"]["sharePermissions"] == {
        "screen": {"state": "idle"},
        "canvas": {"state": "idle"},
    }
    assert connected["id"] == room["room_id"] and connected["clientId"] == ack["clientId"]
    assert connected["user"]["clientId"] == ack["clientId"]
    assert connected["user"]["permissions"]["publish"] is True
    assert [u["name"] for u in connected["userList"]] == ["alice"]
    assert connected["streams"] == [] and connected["iceServers"] == []
    assert connected["initialNumATs"] >= 1
    for key in ("raisedHands", "approvedHands", "floorInvites"):
        assert connected[key] == []

    assert await alice.ack("getMaxNumberOfTalker") == {"result": 0, "maxTalkers": 6}
    assert await alice.ack("logClientEvents", {"eventType": "clientConnSuccess"}) == {"result": 0}


async def test_ice_servers_from_the_config_reach_room_connected() -> None:
    turn = {"urls": "turn:127.0.0.1:3478", "username": "bot", "credential": "secret"}
    async with RoomServer(APP_ID, APP_KEY, port=0, ice_servers=[turn], max_talkers=3) as server:
        room_id = server.create_room("ice")["room_id"]
        client = RawClient()
        await client.connect(server.url)
        try:
            _, connected = await client.join(server.mint_token(room_id, "a"))
            assert connected["iceServers"] == [turn]
            assert await client.ack("getMaxNumberOfTalker") == {"result": 0, "maxTalkers": 3}
        finally:
            await client.close()


# --------------------------------------------------------------------------- publishing


async def test_publish_answers_vp8_and_opus_then_ready_and_media_is_counted(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect, peer: Peer
) -> None:
    alice = await _joined(room_server, room, raw_client, "alice")
    stream_id = await alice.publish(peer())

    answer = alice.payloads("media_engine_connecting")[0]
    assert answer["streamId"] == stream_id and answer["msg"]["type"] == "answer"
    assert "a=candidate:" in answer["msg"]["sdp"]  # server candidates inside the answer
    media = {m["media"]: [c["name"] for c in m["codecs"]] for m in answer["msg"]["media"]}
    assert media == {"audio": ["opus"], "video": ["VP8"]}
    for m in answer["msg"]["media"]:
        for codec in m["codecs"]:
            assert isinstance(codec["payload"], int) and codec["rate"] in (48000, 90000)
    ready = alice.payloads("media_engine_connecting")[1]
    assert ready == {"streamId": stream_id, "msg": {"type": "ready"}}

    first = _stream(room_server.room_view(room["room_id"]), stream_id)
    assert first["state"] == "ready" and first["audio"] and first["video"]
    await asyncio.sleep(1.0)
    second = _stream(room_server.room_view(room["room_id"]), stream_id)["received"]
    await asyncio.sleep(0.5)
    third = _stream(room_server.room_view(room["room_id"]), stream_id)["received"]
    assert second["audio"]["packets"] > 20 and second["audio"]["bytes"] > 0
    assert second["video"]["frames"] > 10
    assert third["video"]["frames"] > second["video"]["frames"]
    assert third["audio"]["frames"] > second["audio"]["frames"]
    assert third["video"]["packets"] >= third["video"]["frames"]
    # never sent its own stream back
    assert "onAddStream" not in alice.names()


async def test_publish_stream_ids_are_unique_integers(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    alice = await _joined(room_server, room, raw_client, "alice")
    bob = await _joined(room_server, room, raw_client, "bob")
    body = {"state": "media_engine", "audio": True, "video": False, "attributes": {"name": "x"}}
    ids = [(await c.ack("publish", body, None))["id"] for c in (alice, bob, alice)]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == 3


async def test_viewer_may_not_publish(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    viewer = await _joined(room_server, room, raw_client, "vic", role="viewer")
    reply = await viewer.ack("publish", {"state": "media_engine", "audio": True, "video": True}, None)
    assert reply["result"] == ErrorCode.NOT_PERMITTED and reply["msg"]
    assert room_server.room_view(room["room_id"])["participants"][0]["streams"] == []


async def _count_frames(track: MediaStreamTrack, counts: dict[str, int]) -> None:
    try:
        while True:
            await track.recv()
            counts[track.kind] = counts.get(track.kind, 0) + 1
    except MediaStreamError:
        pass


@pytest.fixture
async def frame_readers() -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks: list[asyncio.Task[None]] = []
    yield tasks
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_second_participant_sees_the_first_and_receives_its_media(
    room_server: RoomServer,
    room: dict[str, Any],
    raw_client: Connect,
    peer: Peer,
    frame_readers: list[asyncio.Task[None]],
) -> None:
    alice = await _joined(room_server, room, raw_client, "alice")
    alice_stream = await alice.publish(peer())

    bob = await raw_client()
    ack, connected = await bob.join(room_server.mint_token(room["room_id"], name="bob"))
    listed = connected["streams"]
    assert [s["id"] for s in listed] == [alice_stream]
    assert listed[0]["clientId"] == alice.client_id and listed[0]["attributes"]["name"] == "raw"
    assert connected["initialNumATs"] >= alice_stream  # the SDK subscribes to it
    assert {u["name"] for u in connected["userList"]} == {"alice", "bob"}
    joined = await alice.next("user-connected")
    assert joined["clientId"] == ack["clientId"] and joined["name"] == "bob"
    assert joined["permissions"]["publish"] is True

    bob_stream = await bob.publish(peer(), video=False)
    added = await alice.next("onAddStream")
    assert added["id"] == bob_stream and added["clientId"] == bob.client_id
    assert added["audio"] is True and added["video"] is False

    # bob subscribes to alice: answer and ready keyed peerId, real frames arrive
    receiver = peer()
    counts: dict[str, int] = {}
    receiver.on(
        "track",
        lambda track: frame_readers.append(asyncio.create_task(_count_frames(track, counts))),
    )
    await bob.subscribe(receiver, alice_stream)
    replies = [p for p in bob.payloads("media_engine_connecting") if "peerId" in p]
    assert [p["msg"]["type"] for p in replies] == ["answer", "ready"]
    assert all(p["peerId"] == alice_stream and "streamId" not in p for p in replies)
    assert {m["media"] for m in replies[0]["msg"]["media"]} == {"audio", "video"}
    await _eventually(lambda: counts.get("video", 0) > 5 and counts.get("audio", 0) > 5)
    view = room_server.room_view(room["room_id"])
    bob_view = next(p for p in view["participants"] if p["name"] == "bob")
    assert [(s["streamId"], s["state"]) for s in bob_view["subscriptions"]] == [(alice_stream, "connected")]
    assert bob_view["subscriptions"][0]["forwarded"]["video"]["packets"] > 0
    # the server forwards alice's encoded media: it decodes nothing, for anyone
    alice_leg = room_server.media.publish_leg(room["room_id"], alice_stream)
    bob_leg = room_server.media.publish_leg(room["room_id"], bob_stream)
    assert alice_leg is not None and alice_leg.decoding == {"audio": False, "video": False}
    assert bob_leg is not None and bob_leg.decoding == {"audio": False, "video": False}
    alice_view = _stream(view, alice_stream)
    assert alice_view["forwarding"] == "packets" and alice_view["decoded_frames"] == 0
    assert alice_view["subscribers"] == 1
    assert _stream(view, bob_stream)["subscribers"] == 0
    assert await bob.ack("unsubscribe", alice_stream) == {"result": 0}
    assert _stream(room_server.room_view(room["room_id"]), alice_stream)["subscribers"] == 0

    # subscribing to your own stream or to nothing is refused, the room is unchanged
    own = await bob.ack("subscribe", {"streamId": bob_stream}, None)
    assert own["result"] == ErrorCode.INVALID_PARAMETERS
    missing = await bob.ack("subscribe", {"streamId": 999}, None)
    assert missing["result"] == ErrorCode.STREAM_NOT_FOUND


async def test_unpublish_tells_the_others_only_and_closes_the_legs(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect, peer: Peer
) -> None:
    alice = await _joined(room_server, room, raw_client, "alice")
    bob = await _joined(room_server, room, raw_client, "bob")
    stream_id = await alice.publish(peer())
    await bob.next("onAddStream")
    await bob.subscribe(peer(), stream_id)
    assert room_server.media.leg_count == 2

    assert await alice.ack("unpublish", stream_id) == {"result": 0}
    assert await bob.next("onRemoveStream") == {"id": stream_id}
    await alice.settle()
    assert "onRemoveStream" not in alice.names()
    assert room_server.room_view(room["room_id"])["participants"][0]["streams"] == []
    assert room_server.media.leg_count == 0

    again = await alice.ack("unpublish", stream_id)
    assert again["result"] == ErrorCode.STREAM_NOT_FOUND
    theirs = await bob.ack("unpublish", 12345)
    assert theirs["result"] == ErrorCode.STREAM_NOT_FOUND


async def _leaves_cleanly(
    room_server: RoomServer,
    room: dict[str, Any],
    raw_client: Connect,
    peer: Peer,
    leave: Callable[[RawClient], Awaitable[None]],
) -> None:
    alice = await _joined(room_server, room, raw_client, "alice")
    bob = await _joined(room_server, room, raw_client, "bob")
    stream_id = await alice.publish(peer())
    await bob.next("onAddStream")
    await bob.subscribe(peer(), stream_id)
    await alice.subscribe(peer(), await bob.publish(peer(), video=False))

    await leave(alice)
    removed = await bob.next("user-disconnected")
    assert set(removed) == {"clientId", "name", "role", "permissions"}
    assert (removed["clientId"], removed["name"]) == (alice.client_id, "alice")
    names = bob.names()
    assert names.index("onRemoveStream") < names.index("user-disconnected")
    assert bob.payloads("onRemoveStream") == [{"id": stream_id}]

    view = room_server.room_view(room["room_id"])
    assert [p["name"] for p in view["participants"]] == ["bob"]
    bob_view = view["participants"][0]
    assert bob_view["subscriptions"] == [] and len(bob_view["streams"]) == 1
    await _eventually(lambda: room_server.media.leg_count == 1)  # bob's own publish leg only
    # bob is still fully served
    assert await bob.ack("getMaxNumberOfTalker") == {"result": 0, "maxTalkers": 6}


async def test_drop_acks_then_removes_everything(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect, peer: Peer
) -> None:
    async def drop(client: RawClient) -> None:
        assert await client.ack("drop", {"self": True}) == {"result": 0}
        async with asyncio.timeout(3):  # the server closes the socket if the client does not
            await client.disconnected.wait()

    await _leaves_cleanly(room_server, room, raw_client, peer, drop)


async def test_socket_close_without_drop_removes_everything(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect, peer: Peer
) -> None:
    async def close(client: RawClient) -> None:
        await client.close()

    await _leaves_cleanly(room_server, room, raw_client, peer, close)


async def test_mute_events_are_acked_and_relayed_with_the_user(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    alice = await _joined(room_server, room, raw_client, "alice")
    bob = await _joined(room_server, room, raw_client, "bob")
    for event, field, value in [
        ("user-video-muted", "videoMuted", True),
        ("user-audio-muted", "audioMuted", True),
        ("user-video-unmuted", "videoMuted", False),
        ("user-audio-unmuted", "audioMuted", False),
    ]:
        assert await alice.ack(event) == {"result": 0}
        relay = await bob.next(event)
        assert set(relay) == {"clientId", "user"}
        assert relay["clientId"] == alice.client_id
        assert relay["user"]["clientId"] == alice.client_id and relay["user"][field] is value
    await alice.settle()
    assert not any(n.startswith("user-") and n.endswith("muted") for n in alice.names())

    # a joiner sees the state in userList
    assert await alice.ack("user-audio-muted") == {"result": 0}
    _, connected = await (await raw_client()).join(room_server.mint_token(room["room_id"], "carol"))
    alice_user = next(u for u in connected["userList"] if u["name"] == "alice")
    assert alice_user["audioMuted"] is True and alice_user["videoMuted"] is False


# --------------------------------------------------------------------------- robustness


async def test_garbage_never_crashes_the_server_nor_corrupts_the_room(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect, peer: Peer
) -> None:
    alice = await _joined(room_server, room, raw_client, "alice")
    stream_id = await alice.publish(peer())
    mallory = await _joined(room_server, room, raw_client, "mallory")
    before = room_server.room_view(room["room_id"])

    malformed: list[tuple[str, tuple[Any, ...]]] = [
        ("no-such-event", ({"x": 1},)),
        ("publish", ("not an object", None)),
        ("publish", ({"state": "canvas"}, None)),
        ("publish", ({"audio": "yes"}, None)),
        ("subscribe", ({"streamId": "abc"}, None)),
        ("subscribe", ()),
        ("signaling_message", ({"streamId": stream_id},)),
        ("signaling_message", ({"streamId": stream_id, "msg": "offer"}, None)),
        ("signaling_message", ({"streamId": [1], "msg": {"type": "offer", "sdp": "x"}}, None)),
        ("unpublish", ({"nested": {"deep": True}},)),
        ("unpublish", (True,)),
        ("logClientEvents", (42,)),
        ("token", ({"tokenId": None},)),
    ]
    for event, args in malformed:
        reply = await mallory.ack(event, *args)
        expected = ErrorCode.ALREADY_JOINED if event == "token" else ErrorCode.MALFORMED_REQUEST
        assert reply["result"] == expected, (event, args, reply)
        assert isinstance(reply["msg"], str) and reply["msg"]

    # well-formed but not allowed: someone else's stream, an SDP that is not one
    other = {"streamId": stream_id, "msg": {"type": "offer", "sdp": "v=0\r\n"}}
    assert (await mallory.ack("signaling_message", other, None))["result"] == ErrorCode.STREAM_NOT_FOUND
    body = {"state": "media_engine", "audio": True, "video": True}
    own = (await mallory.ack("publish", body, None))["id"]
    for sdp in ["garbage", "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 126\r\na=rtpmap:126 H264/90000\r\n"]:
        bad = {"streamId": own, "msg": {"type": "offer", "sdp": sdp}}
        reply = await mallory.ack("signaling_message", bad, None)
        assert reply["result"] == ErrorCode.MEDIA_NEGOTIATION_FAILED, sdp
    candidate = {"sdpMLineIndex": 0, "sdpMid": "0", "candidate": "a=candidate:garbage"}
    no_leg = {"streamId": own, "msg": {"type": "candidate", "candidate": candidate}}
    assert (await mallory.ack("signaling_message", no_leg, None))["result"] == ErrorCode.STREAM_NOT_FOUND
    assert await mallory.ack("unpublish", own) == {"result": 0}

    # fire-and-forget garbage and raw Engine.IO junk: ignored
    await mallory.sio.emit("publish", "no ack wanted")
    await mallory.sio.emit("no-such-event")
    await mallory.sio.eio.send("this is not a socket.io packet")
    await mallory.sio.eio.send('2["unterminated')
    await mallory.sio.eio.send("42[]")  # Socket.IO CONNECT_ERROR from a client
    await mallory.sio.eio.send("2[]")  # an event without a name
    await mallory.sio.eio.send('2[{"not": "a name"}]')

    assert await mallory.ack("getMaxNumberOfTalker") == {"result": 0, "maxTalkers": 6}
    assert await alice.ack("getMaxNumberOfTalker") == {"result": 0, "maxTalkers": 6}
    after = room_server.room_view(room["room_id"])
    assert [p["name"] for p in after["participants"]] == [p["name"] for p in before["participants"]]
    assert _stream(after, stream_id)["state"] == "ready"
    assert [s["id"] for p in after["participants"] for s in p["streams"]] == [stream_id]

    # a fresh participant still joins and sees alice's stream
    _, connected = await (await raw_client()).join(room_server.mint_token(room["room_id"], "late"))
    assert [s["id"] for s in connected["streams"]] == [stream_id]


async def test_requests_before_joining_are_4120(room_server: RoomServer, raw_client: Connect) -> None:
    client = await raw_client()
    assert (await client.ack("getMaxNumberOfTalker"))["result"] == ErrorCode.NOT_JOINED
    assert (await client.ack("user-audio-muted"))["result"] == ErrorCode.NOT_JOINED
    assert (await client.ack("drop", {"self": True}))["result"] == ErrorCode.NOT_JOINED


async def test_counting_by_decoding_when_the_receiver_tap_is_off(peer: Peer) -> None:
    """The fallback path (aiortc internals renamed): decoded frames are counted instead."""
    async with RoomServer(APP_ID, APP_KEY, port=0, tap_encoded=False) as server:
        room_id = server.create_room("fallback")["room_id"]
        client = RawClient()
        await client.connect(server.url)
        try:
            await client.join(server.mint_token(room_id, "a"))
            stream_id = await client.publish(peer())

            def frames() -> int:
                return int(_stream(server.room_view(room_id), stream_id)["received"]["video"]["frames"])

            await _eventually(lambda: frames() > 10)
        finally:
            await client.close()


async def test_server_close_disconnects_everyone_and_closes_every_leg(peer: Peer) -> None:
    server = RoomServer(APP_ID, APP_KEY, port=0)
    await server.start()
    room_id = server.create_room("closing")["room_id"]
    clients = []
    for name in ("a", "b"):
        client = RawClient()
        await client.connect(server.url)
        await client.join(server.mint_token(room_id, name))
        clients.append(client)
    stream_id = await clients[0].publish(peer())
    await clients[1].subscribe(peer(), stream_id)
    await server.aclose()
    await server.aclose()  # idempotent
    for client in clients:
        async with asyncio.timeout(5):
            await client.disconnected.wait()
    assert server.media.leg_count == 0
