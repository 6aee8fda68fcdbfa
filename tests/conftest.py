"""Shared fixtures: a real room server on 127.0.0.1, rooms, and bare clients to drive it.

``RawClient`` is a plain python-socketio client that records every packet as it arrives,
so tests can check the wire itself (ack before ``room-connected``, keys of each reply).
Its ``publish``/``subscribe`` helpers drive real aiortc peers through the official
client's message sequence; anything that only needs "a participant that publishes" can use
them without the bot's SDK.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import socketio  # type: ignore[import-untyped]
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack, VideoStreamTrack
from socketio import packet as sio_packet

from bot.server import RoomServer

APP_ID = "test-app"
APP_KEY = "test-key-0123456789abcdef0123456789abcdef"
SOCKETIO_PATH = "/v3/socket.io"
END_MARKER = {"sdpMLineIndex": -1, "sdpMid": "end", "candidate": "end"}


def envelope_of(token: str) -> dict[str, Any]:
    """The decoded token object, as the official SDK sends it back in ``token``."""
    obj: dict[str, Any] = json.loads(base64.b64decode(token))
    return obj


def token_payload(token: str, **extra: Any) -> dict[str, Any]:
    """The ``token`` event payload of the official Web SDK 2.3.16 (trace line 4)."""
    return {
        **envelope_of(token),
        "version": "2.3.16",
        "hostType": "chrome-stable",
        "hostVersion": "156.0.0.0",
        "hostDeviceType": "desktop",
        "userAgent": "UA",
        **extra,
    }


def new_peer() -> RTCPeerConnection:
    """An aiortc peer with no ICE servers (the default would try Google's STUN)."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


class _RecordingClient(socketio.AsyncClient):  # type: ignore[misc]
    """Records each Socket.IO packet before python-socketio dispatches it."""

    def __init__(self, wire: list[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._wire = wire

    async def _handle_eio_message(self, data: Any) -> None:
        if isinstance(data, str):
            self._wire.append(sio_packet.Packet(encoded_packet=data))
        await super()._handle_eio_message(data)


class RawClient:
    """A bare Socket.IO client of the room server that keeps what it received, in order."""

    def __init__(self) -> None:
        self.wire: list[sio_packet.Packet] = []
        self.sio = _RecordingClient(self.wire, reconnection=False)
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        self._taken: set[int] = set()
        self._changed = asyncio.Condition()
        self.disconnected = asyncio.Event()
        self.client_id: str | None = None
        self.sio.on("*", self._on_event)
        self.sio.on("disconnect", self._on_disconnect)

    async def _on_event(self, event: str, *args: Any) -> None:
        async with self._changed:
            self.events.append((event, args))
            self._changed.notify_all()

    async def _on_disconnect(self, *args: Any) -> None:
        self.disconnected.set()

    async def connect(self, url: str) -> None:
        await self.sio.connect(url, socketio_path=SOCKETIO_PATH, transports=["websocket"])

    async def close(self) -> None:
        """A deliberate close: the Socket.IO disconnect packet reaches the server first.

        python-socketio's ``disconnect()`` queues that packet and closes the WebSocket without
        waiting for it to be written, so the server may see only the transport closing, which
        it treats as a network fault (the reconnection grace period). Flush it first.
        """
        if self.sio.connected:
            with contextlib.suppress(Exception):
                await self.sio._send_packet(sio_packet.Packet(sio_packet.DISCONNECT, namespace="/"))
                async with asyncio.timeout(1):
                    await self.sio.eio.queue.join()
            await self.sio.disconnect()

    # ------------------------------------------------------------------ requests

    async def call(self, event: str, *args: Any, within: float = 10.0) -> list[Any]:
        """Emit with an ack; returns the ack's argument list."""
        done: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

        def on_ack(*ack: Any) -> None:
            if not done.done():
                done.set_result(list(ack))

        await self.sio.emit(event, args if args else None, callback=on_ack)
        async with asyncio.timeout(within):
            return await done

    async def ack(self, event: str, *args: Any) -> Any:
        """The first argument of the ack (None for an empty ack)."""
        reply = await self.call(event, *args)
        return reply[0] if reply else None

    # ------------------------------------------------------------------ events

    async def next(
        self,
        name: str,
        predicate: Callable[[Any], bool] | None = None,
        within: float = 10.0,
    ) -> Any:
        """The first not yet taken ``name`` event (its first argument) matching ``predicate``."""

        def find() -> Any:
            for i, (event, args) in enumerate(self.events):
                if i in self._taken or event != name:
                    continue
                payload = args[0] if args else None
                if predicate is None or predicate(payload):
                    self._taken.add(i)
                    return (payload,)
            return None

        async with asyncio.timeout(within), self._changed:
            while (found := find()) is None:
                await self._changed.wait()
        return found[0]

    def names(self) -> list[str]:
        return [event for event, _ in self.events]

    def payloads(self, name: str) -> list[Any]:
        return [args[0] if args else None for event, args in self.events if event == name]

    async def settle(self, delay: float = 0.3) -> None:
        """Give in-flight events time to arrive (for asserting that none came)."""
        await asyncio.sleep(delay)

    # ------------------------------------------------------------------ flows

    async def join(self, token: str, **extra: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """``token`` then ``room-connected``: returns (ack, room-connected payload)."""
        ack = await self.ack("token", token_payload(token, **extra))
        assert ack["result"] == 0, ack
        self.client_id = ack["clientId"]
        connected = await self.next("room-connected")
        return ack, connected

    async def publish(
        self,
        pc: RTCPeerConnection,
        *,
        audio: bool = True,
        video: bool = True,
        name: str = "raw",
        tracks: Sequence[MediaStreamTrack] | None = None,
    ) -> int:
        """Publish real media as the official client does; returns the stream id once the
        server said ``ready``. ``tracks``: what to send (default: aiortc's test tracks for the
        kinds asked)."""
        ack = await self.ack(
            "publish",
            {
                "state": "media_engine",
                "data": True,
                "audio": audio,
                "video": video,
                "attributes": {"name": name},
                "muteStream": {"audio": False, "video": False},
                "minVideoBW": 100,
                "maxVideoBW": 1000,
                "scheme": "notify-break-recover",
            },
            None,
        )
        assert ack["result"] == 0, ack
        stream_id: int = ack["id"]
        if tracks is not None:
            for track in tracks:
                pc.addTrack(track)
        else:
            if audio:
                pc.addTrack(AudioStreamTrack())
            if video:
                pc.addTrack(VideoStreamTrack())
        await pc.setLocalDescription(await pc.createOffer())
        await self.offer(pc, stream_id)
        return stream_id

    async def subscribe(
        self, pc: RTCPeerConnection, stream_id: int, *, audio: bool = True, video: bool = True
    ) -> None:
        """Subscribe with a receive-only offer; returns once ``ready`` (keyed peerId) came."""
        ack = await self.ack(
            "subscribe",
            {
                "streamId": stream_id,
                "audio": audio,
                "video": video,
                "data": True,
                "canvas": False,
                "browser": "chrome-stable",
                "muteStream": {"audio": False},
            },
            None,
        )
        assert ack["result"] == 0, ack
        if audio:
            pc.addTransceiver("audio", direction="recvonly")
        if video:
            pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        await self.offer(pc, stream_id, key="peerId")

    async def offer(self, pc: RTCPeerConnection, stream_id: int, *, key: str = "streamId") -> None:
        """Send the local offer, apply the answer, send the end marker, wait for ``ready``."""
        reply = await self.call(
            "signaling_message",
            {"streamId": stream_id, "msg": {"type": "offer", "sdp": pc.localDescription.sdp}},
            None,
        )
        assert reply == [], reply

        def mine(kind: str) -> Callable[[Any], bool]:
            return lambda p: p.get(key) == stream_id and p["msg"]["type"] == kind

        answer = await self.next("media_engine_connecting", mine("answer"))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["msg"]["sdp"], type="answer"))
        end = {"streamId": stream_id, "msg": {"type": "candidate", "candidate": END_MARKER}}
        assert await self.call("signaling_message", end, None) == []
        await self.next("media_engine_connecting", mine("ready"))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
async def room_server() -> AsyncIterator[RoomServer]:
    """A started room server on 127.0.0.1 (free port), closed after the test."""
    server = RoomServer(app_id=APP_ID, app_key=APP_KEY, host="127.0.0.1", port=0)
    await server.start()
    try:
        yield server
    finally:
        await server.aclose()


@pytest.fixture
def room(room_server: RoomServer) -> dict[str, Any]:
    """A fresh room on ``room_server`` (the REST room dict; ``room["room_id"]``)."""
    return room_server.create_room(name="test-room")


@pytest.fixture
async def raw_client(room_server: RoomServer) -> AsyncIterator[Callable[[], Awaitable[RawClient]]]:
    """Factory of connected RawClients on ``room_server``; all closed after the test."""
    clients: list[RawClient] = []

    async def connect() -> RawClient:
        client = RawClient()
        await client.connect(room_server.url)
        clients.append(client)
        return client

    try:
        yield connect
    finally:
        for client in clients:
            await client.close()


@pytest.fixture
async def peer() -> AsyncIterator[Callable[[], RTCPeerConnection]]:
    """Factory of aiortc peers (no ICE servers), all closed after the test."""
    peers: list[RTCPeerConnection] = []

    def make() -> RTCPeerConnection:
        pc = new_peer()
        peers.append(pc)
        return pc

    try:
        yield make
    finally:
        for pc in peers:
            await pc.close()


# --- the suite writes only to temporary folders ------------------------------------------------

_REPO_DATA = Path(__file__).resolve().parents[1] / "data"


def _data_state() -> dict[str, float]:
    if not _REPO_DATA.is_dir():
        return {}
    return {str(p): p.stat().st_mtime for p in _REPO_DATA.rglob("*") if p.is_file()}


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_DATA_KEY] = _data_state()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A server started in the repository without ``--data-dir`` writes ``data/rooms.sqlite3``
    there: the README's next command then shows the tests' rooms. Fail the run if any did."""
    before = session.config.stash.get(_DATA_KEY, {})
    if session.config.option.collectonly or exitstatus != 0:
        return
    changed = sorted(p for p, t in _data_state().items() if before.get(p) != t)
    if changed:
        session.config.get_terminal_writer().line(
            f"the tests wrote into the repository: {', '.join(changed)} (give servers --data-dir)", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_DATA_KEY = pytest.StashKey[dict[str, float]]()
