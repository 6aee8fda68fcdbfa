"""Replay the official EnableX Web SDK's own messages (C->S lines of the recorded traces)
against the room server, and check each reply carries what that client needs.

Substituted, because nobody holds what the recording used: the token's envelope fields (a real
minted token), the offers' SDP (real aiortc offers: Chrome's fingerprints belong to a browser
that is gone), stream ids (the server picks its own) and rejoin ids. Everything else goes out
exactly as recorded, candidates with their ``a=`` prefix and the end marker included. The
remote participant of the recording is played by a second real client publishing real media.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from conftest import RawClient, envelope_of
from socketio import packet as sio_packet  # type: ignore[import-untyped]

from bot.server import RoomServer

FULL = "enxrtc-2.3.16-full.jsonl"
RECONNECT = "enxrtc-2.3.16-reconnect.jsonl"
ENVELOPE_FIELDS = ("tokenId", "host", "secure", "signature", "roomMeta", "logId")
# PROTOCOL.md section 3: without these the official client stalls or throws
REQUIRED_ROOM_CONNECTED = ("room", "videoBitrateQualityMap", "user", "videoMutedUsers")

Connect = Callable[[], Awaitable[RawClient]]
Peer = Callable[[], RTCPeerConnection]


TRACES = Path(__file__).resolve().parent / "fixtures" / "traces"  # tests/fixtures/README.md


def _load(name: str) -> list[dict[str, Any]]:
    with (TRACES / name).open() as f:
        return [json.loads(line) for line in f if line.strip()]


def _shape(args: list[Any]) -> list[Any]:
    """An ack's shape: the keys of each object argument (values differ run to run)."""
    return [sorted(a) if isinstance(a, dict) else type(a).__name__ for a in args]


def _wire_order(client: RawClient) -> list[str]:
    return [
        "ack" if p.packet_type == sio_packet.ACK else str(p.data[0])
        for p in client.wire
        if p.packet_type in (sio_packet.ACK, sio_packet.EVENT)
    ]


class Replay:
    """Plays the official client's side of a recording; ``remote`` plays the other user."""

    def __init__(
        self,
        lines: list[dict[str, Any]],
        server: RoomServer,
        room_id: str,
        connect: Connect,
        peer: Peer,
        remote: RawClient,
    ) -> None:
        self.lines = lines
        self.server = server
        self.room_id = room_id
        self.connect = connect
        self.peer = peer
        self.remote = remote
        self.token = server.mint_token(room_id, name="enxtrace-web", role="moderator")
        self.client: RawClient | None = None
        self.conn: int | None = None
        self.client_ids: list[str] = []
        self.ids: dict[int, int] = {}  # recorded stream id -> the server's
        self.own: set[int] = set()  # recorded ids of streams this client published
        self.legs: dict[int, RTCPeerConnection] = {}  # recorded stream id -> our peer
        self.history: list[tuple[str, list[Any]]] = []

    @property
    def me(self) -> RawClient:
        assert self.client is not None
        return self.client

    def recorded_ack(self, request: dict[str, Any]) -> list[Any]:
        for line in self.lines:
            if (
                line["dir"] == "S->C"
                and line["kind"] == "ack"
                and line["conn"] == request["conn"]
                and line["ack"] == request["ack"]
            ):
                return list(line["args"])
        raise AssertionError(f"no recorded ack for {request['event']} #{request['ack']}")

    async def run(self) -> None:
        for line in self.lines:
            if line["dir"] != "C->S" or line["kind"] != "event":
                continue
            if line["conn"] != self.conn:
                await self._new_connection(line["conn"])
            recorded = self.recorded_ack(line) if line["ack"] is not None else None
            reply = await self._send(line, recorded)
            self.history.append((line["event"], reply))
            if recorded is not None:
                # the same shape the official client accepted, and success
                assert _shape(reply) == _shape(recorded), (line["event"], reply, recorded)
                if recorded and isinstance(recorded[0], dict):
                    assert reply[0]["result"] == 0, (line["event"], reply)

    async def _new_connection(self, conn: int) -> None:
        if self.client is not None:  # the recorded socket dropped: ours closes, no unpublish
            await self.client.close()
            for pc in self.legs.values():
                await pc.close()
            self.legs.clear()
        self.client = await self.connect()
        self.conn = conn

    async def _send(self, line: dict[str, Any], recorded: list[Any] | None) -> list[Any]:
        event, args = line["event"], list(line["args"])
        if event == "token":
            return await self._token(args[0])
        if event == "publish":
            reply = await self.me.call(event, *args)
            assert recorded is not None
            self.ids[recorded[0]["id"]] = reply[0]["id"]
            self.own.add(recorded[0]["id"])
            return reply
        if event == "subscribe":
            await self._remote_is_publishing(args[0]["streamId"])
            args[0] = {**args[0], "streamId": self.ids[args[0]["streamId"]]}
            return await self.me.call(event, *args)
        if event == "signaling_message":
            return await self._signaling(args)
        if event == "unpublish":
            return await self.me.call(event, self.ids[args[0]])
        if event == "user-video-muted":
            reply = await self.me.call(event, *args)
            relay = await self.remote.next(event)
            assert relay["clientId"] == self.client_ids[-1]
            assert relay["user"]["videoMuted"] is True  # the shape the official client needs
            return reply
        return await self.me.call(event, *args)

    async def _token(self, recorded: dict[str, Any]) -> list[Any]:
        envelope = envelope_of(self.token)
        payload = {**recorded, **{k: envelope[k] for k in ENVELOPE_FIELDS}}
        if payload.get("isReconnecting"):
            payload["oldClientIdForReconnect"] = self.client_ids[-1]
            payload["room"] = self.room_id
        reply = await self.me.call("token", payload)
        connected = await self.me.next("room-connected")
        assert _wire_order(self.me)[:2] == ["ack", "room-connected"]
        for key in REQUIRED_ROOM_CONNECTED:
            assert key in connected, key
        assert "settings" in connected["room"] and "sharePermissions" in connected["room"]
        assert connected["user"]["clientId"] == reply[0]["clientId"]
        self.client_ids.append(reply[0]["clientId"])
        return reply

    async def _remote_is_publishing(self, recorded_id: int) -> None:
        """The recording's remote user publishes ``recorded_id``: ours does it for real."""
        if recorded_id in self.ids:
            return
        stream_id = await self.remote.publish(self.peer(), name="Remote Bot")
        self.ids[recorded_id] = stream_id
        added = await self.me.next("onAddStream", lambda p: p["id"] == stream_id)
        assert added["clientId"] == self.remote.client_id
        assert set(added) == {"id", "clientId", "audio", "video", "data", "screen", "attributes"}

    async def _signaling(self, args: list[Any]) -> list[Any]:
        recorded_id = args[0]["streamId"]
        stream_id = self.ids[recorded_id]
        msg = args[0]["msg"]
        subscriber = recorded_id not in self.own
        key = "peerId" if subscriber else "streamId"
        if msg["type"] == "offer":
            pc = self.legs[recorded_id] = self.peer()
            if subscriber:
                pc.addTransceiver("audio", direction="recvonly")
                pc.addTransceiver("video", direction="recvonly")
            else:
                pc.addTrack(AudioStreamTrack())
                pc.addTrack(VideoStreamTrack())
            await pc.setLocalDescription(await pc.createOffer())
            msg = {"type": "offer", "sdp": pc.localDescription.sdp}
        reply = await self.me.call(
            "signaling_message", {**args[0], "streamId": stream_id, "msg": msg}, *args[1:]
        )
        if msg["type"] == "offer":
            answer = await self.me.next(
                "media_engine_connecting",
                lambda p: p.get(key) == stream_id and p["msg"]["type"] == "answer",
            )
            _check_answer(answer, key)
            await pc.setRemoteDescription(RTCSessionDescription(answer["msg"]["sdp"], "answer"))
        elif msg["candidate"]["candidate"] == "end":
            ready = await self.me.next(
                "media_engine_connecting",
                lambda p: p.get(key) == stream_id and p["msg"]["type"] == "ready",
            )
            assert ready == {key: stream_id, "msg": {"type": "ready"}}
        return reply


def _check_answer(answer: dict[str, Any], key: str) -> None:
    """msg.media is what makes the official client apply the answer (PROTOCOL.md 4)."""
    assert set(answer) == {key, "msg"}
    msg = answer["msg"]
    assert set(msg) == {"type", "sdp", "media"} and msg["type"] == "answer"
    assert "a=candidate:" in msg["sdp"]
    names = set()
    for m in msg["media"]:
        assert set(m) == {"media", "codecs"} and m["media"] in ("audio", "video")
        for codec in m["codecs"]:
            assert set(codec) == {"name", "payload", "rate"}
            names.add(codec["name"])
    assert names == {"opus", "VP8"}  # no H264: the SDK would rewrite the answer


async def _remote(room_server: RoomServer, room_id: str, connect: Connect) -> RawClient:
    remote = await connect()
    await remote.join(room_server.mint_token(room_id, name="Remote Bot", user_ref="remote-bot-1"))
    return remote


async def test_full_trace_is_accepted_with_every_reply_the_official_client_needs(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect, peer: Peer
) -> None:
    room_id = room["room_id"]
    remote = await _remote(room_server, room_id, raw_client)
    replay = Replay(_load(FULL), room_server, room_id, raw_client, peer, remote)
    await replay.run()

    events = [e for e, _ in replay.history]
    assert events[:4] == ["token", "getMaxNumberOfTalker", "publish", "logClientEvents"]
    assert events[-2:] == ["unpublish", "drop"]
    # the remote heard the join, the stream, then (after drop) its removal and the leave
    left = await remote.next("user-disconnected")
    assert left["clientId"] == replay.client_ids[0]
    lifecycle = ("user-connected", "onAddStream", "onRemoveStream", "user-disconnected")
    assert [n for n in remote.names() if n in lifecycle] == list(lifecycle)
    assert remote.payloads("onRemoveStream") == [{"id": replay.ids[1001]}]
    # the official client never hears of its own stream's removal
    assert "onRemoveStream" not in replay.me.names()
    assert [p["name"] for p in room_server.room_view(room_id)["participants"]] == ["Remote Bot"]


async def test_mute_relay_to_the_official_client_carries_the_user(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect, peer: Peer
) -> None:
    room_id = room["room_id"]
    remote = await _remote(room_server, room_id, raw_client)
    joining = ("token", "getMaxNumberOfTalker", "logClientEvents")
    lines = [line for line in _load(FULL) if line["dir"] == "S->C" or line["event"] in joining]
    replay = Replay(lines, room_server, room_id, raw_client, peer, remote)
    await replay.run()
    for event, field, value in [
        ("user-video-muted", "videoMuted", True),
        ("user-video-unmuted", "videoMuted", False),
        ("user-audio-muted", "audioMuted", True),
        ("user-audio-unmuted", "audioMuted", False),
    ]:
        assert await remote.ack(event) == {"result": 0}
        relay = await replay.me.next(event)
        assert set(relay) == {"clientId", "user"} and relay["user"][field] is value


async def test_reconnect_trace_rejoins_with_the_same_token_and_a_new_stream(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect, peer: Peer
) -> None:
    room_id = room["room_id"]
    remote = await _remote(room_server, room_id, raw_client)
    replay = Replay(_load(RECONNECT), room_server, room_id, raw_client, peer, remote)
    await replay.run()

    first, second = replay.client_ids
    assert first != second
    await remote.next("user-disconnected", lambda p: p["clientId"] == second)
    # the stream of the dropped socket was cleaned up; the rejoin published a new id
    assert replay.ids[1001] != replay.ids[1002]
    assert remote.payloads("onRemoveStream") == [{"id": replay.ids[1001]}, {"id": replay.ids[1002]}]
    disconnected = [p["clientId"] for p in remote.payloads("user-disconnected")]
    assert disconnected == [first, second]
    assert [p["name"] for p in room_server.room_view(room_id)["participants"]] == ["Remote Bot"]
