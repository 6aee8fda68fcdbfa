"""Room server CPU per forwarded stream, on loopback.

Method: the room server runs alone in a child process (this script with ``--child``); this
process runs N publishers (aiortc, ``SyntheticVideoTrack`` 320x180@15 + a 440 Hz tone, encoded
live) and S raw subscribers per stream, which decode and discard what they get (their CPU is
not measured). The server's CPU is its user+system time from /proc over ``--window`` seconds,
after ``--settle`` seconds, divided by wall time (100% = one core), in three phases:

1. idle: the server with one empty room;
2. receiving: N publish legs, nobody subscribed (received, counted, dropped);
3. forwarding: the same plus N x S subscribe legs.

Per forwarded stream = (forwarding - receiving) / (N x S); per received stream = (receiving -
idle) / N. Also prints each subscriber's time from ``ready`` to its first decoded video frame
and what the server says it forwarded. ``--mode decoded`` runs the server's fallback (aiortc
decodes, each subscribe leg re-encodes) for comparison.

    .venv/bin/python bench/server_forward.py [--streams 4] [--subscribers 2] [--window 10]
        [--mode packets|decoded]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import socketio  # type: ignore[import-untyped]
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bot.media import SyntheticVideoTrack, ToneAudioTrack

sys.path.insert(0, str(Path(__file__).resolve().parent))
from single_bot import ROOT, cpu_seconds, free_port

APP_ID, APP_KEY = "bench", "bench-key-0123456789abcdef0123456789abcdef"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{APP_ID}:{APP_KEY}".encode()).decode()}
END_MARKER = {"sdpMLineIndex": -1, "sdpMid": "end", "candidate": "end"}


# --------------------------------------------------------------------------- the server (child)


async def child(port: int, mode: str) -> None:
    import logging

    import structlog

    from bot.server import RoomServer

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    async with RoomServer(APP_ID, APP_KEY, port=port, tap_encoded=mode == "packets") as server:
        room_id = server.create_room("bench")["room_id"]
        print(json.dumps({"room_id": room_id, "url": server.url}), flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin


# --------------------------------------------------------------------------- clients


class Client:
    """A bare Socket.IO participant driving aiortc peers as the official client does."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sio = socketio.AsyncClient(reconnection=False)
        self.peers: list[RTCPeerConnection] = []
        self.tasks: list[asyncio.Task[None]] = []
        self._waiters: dict[tuple[str, int, str], asyncio.Future[dict[str, Any]]] = {}
        self.sio.on("media_engine_connecting", self._on_media)

    async def _on_media(self, payload: dict[str, Any]) -> None:
        key = "peerId" if "peerId" in payload else "streamId"
        future = self._waiters.get((key, payload[key], payload["msg"]["type"]))
        if future is not None and not future.done():
            future.set_result(payload)

    def _expect(self, key: str, stream_id: int, kind: str) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[(key, stream_id, kind)] = future
        return future

    async def call(self, event: str, *args: Any) -> Any:
        reply = await self.sio.call(event, args if len(args) > 1 else args[0], timeout=10)
        return reply

    async def join(self, token: str) -> None:
        connected = asyncio.get_running_loop().create_future()
        self.sio.on("room-connected", lambda *_: connected.done() or connected.set_result(True))
        await self.sio.connect(self.url, socketio_path="/v3/socket.io", transports=["websocket"])
        envelope = json.loads(base64.b64decode(token))
        payload = {**envelope, "version": "2.3.16", "hostType": "chrome-stable", "userAgent": "bench"}
        ack = await self.call("token", payload)
        assert ack["result"] == 0, ack
        await asyncio.wait_for(connected, 10)

    def _peer(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.peers.append(pc)
        return pc

    async def _negotiate(self, pc: RTCPeerConnection, stream_id: int, key: str) -> None:
        await pc.setLocalDescription(await pc.createOffer())
        answer = self._expect(key, stream_id, "answer")
        ready = self._expect(key, stream_id, "ready")
        offer = {"type": "offer", "sdp": pc.localDescription.sdp}
        await self.call("signaling_message", {"streamId": stream_id, "msg": offer}, None)
        reply = await asyncio.wait_for(answer, 10)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["msg"]["sdp"], type="answer"))
        end = {"streamId": stream_id, "msg": {"type": "candidate", "candidate": END_MARKER}}
        await self.call("signaling_message", end, None)
        await asyncio.wait_for(ready, 30)

    async def publish(self) -> int:
        body = {"state": "media_engine", "audio": True, "video": True, "attributes": {"name": "bench"}}
        ack = await self.call("publish", body, None)
        assert ack["result"] == 0, ack
        pc = self._peer()
        pc.addTrack(ToneAudioTrack(440.0))
        pc.addTrack(SyntheticVideoTrack(320, 180, fps=15))
        await self._negotiate(pc, ack["id"], "streamId")
        return int(ack["id"])

    async def subscribe(self, stream_id: int) -> float:
        """Subscribe and discard what arrives; returns ready -> first decoded video frame (s)."""
        body = {"streamId": stream_id, "audio": True, "video": True, "data": False, "canvas": False}
        ack = await self.call("subscribe", body, None)
        assert ack["result"] == 0, ack
        pc = self._peer()
        first_video: asyncio.Future[float] = asyncio.get_running_loop().create_future()

        async def drain(track: MediaStreamTrack) -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    await track.recv()
                    if track.kind == "video" and not first_video.done():
                        first_video.set_result(time.monotonic())

        pc.on("track", lambda track: self.tasks.append(asyncio.create_task(drain(track))))
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")
        await self._negotiate(pc, stream_id, "peerId")
        ready = time.monotonic()
        return await asyncio.wait_for(first_video, 10) - ready

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for pc in self.peers:
            await pc.close()
        await self.sio.disconnect()


# --------------------------------------------------------------------------- the run


async def mint(http: aiohttp.ClientSession, url: str, room_id: str, name: str) -> str:
    body = {"name": name, "role": "participant"}
    async with http.post(f"{url}/video/v2/rooms/{room_id}/tokens", json=body) as r:
        body = await r.json()
        return str(body["token"])


async def measure(pid: int, settle: float, window: float) -> float:
    await asyncio.sleep(settle)
    c0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(window)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0) * 100


async def main(args: argparse.Namespace) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--child",
        "--port",
        str(port),
        "--mode",
        args.mode,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    clients: list[Client] = []
    try:
        assert proc.stdout is not None
        info = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
        url, room_id = info["url"], info["room_id"]
        print(f"server pid {proc.pid} ({args.mode}) on {url}; {os.cpu_count()} cores")
        idle = await measure(proc.pid, args.settle, args.window)
        print(f"idle:        {idle:5.1f} % of a core")

        async with aiohttp.ClientSession(headers=AUTH) as http:
            publishers = [Client(url) for _ in range(args.streams)]
            for i, client in enumerate(publishers):
                await client.join(await mint(http, url, room_id, f"pub-{i}"))
            clients += publishers
            stream_ids = [await c.publish() for c in publishers]
            receiving = await measure(proc.pid, args.settle, args.window)
            print(f"receiving:   {receiving:5.1f} % ({args.streams} publish legs, no subscriber)")

            subscribers = [Client(url) for _ in range(args.subscribers)]
            for i, client in enumerate(subscribers):
                await client.join(await mint(http, url, room_id, f"sub-{i}"))
            clients += subscribers
            ttff = [await s.subscribe(stream_id) for stream_id in stream_ids for s in subscribers]
            legs = len(ttff)
            forwarding = await measure(proc.pid, args.settle, args.window)
            print(f"forwarding:  {forwarding:5.1f} % (+ {legs} subscribe legs)")
            async with http.get(f"{url}/emulator/rooms/{room_id}") as r:
                view = await r.json()
            async with http.get(f"{url}/metrics") as r:
                metrics = await r.text()

        streams = [s for p in view["participants"] for s in p["streams"]]
        decoded = sum(s["decoded_frames"] for s in streams)
        total = "enx_server_forwarded_packets_total"
        packets = next(line.split()[-1] for line in metrics.splitlines() if line.startswith(total))
        print(
            f"per received stream:  {(receiving - idle) / args.streams:5.2f} % of a core\n"
            f"per forwarded stream: {(forwarding - receiving) / legs:5.2f} % of a core "
            f"(subscribe leg, audio + video)\n"
            f"time to first frame:  median {statistics.median(ttff) * 1000:.0f} ms, "
            f"max {max(ttff) * 1000:.0f} ms over {legs} subscribers\n"
            f"server: forwarding={streams[0]['forwarding']}, decoded_frames={decoded}, "
            f"forwarded packets={packets}"
        )
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--subscribers", type=int, default=2, help="subscribers per stream")
    parser.add_argument("--window", type=float, default=10.0, help="CPU window per phase (s)")
    parser.add_argument("--settle", type=float, default=2.0, help="wait before each window (s)")
    parser.add_argument("--mode", choices=("packets", "decoded"), default="packets")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    if arguments.child:
        asyncio.run(child(arguments.port, arguments.mode))
    else:
        asyncio.run(main(arguments))
