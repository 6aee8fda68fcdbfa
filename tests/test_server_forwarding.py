"""The room server forwards encoded media: no decoding, no re-encoding, PLIs reach the publisher.

The first half drives :mod:`bot.server.forwarding` with no network (fake VP8 frames); the
second uses real sockets and real aiortc peers: a publisher sending ``SyntheticVideoTrack``
(320x180, a frame counter drawn in each frame) and a 440 Hz tone, and raw subscribers that
decode on their side (they are the clients) and read the counter and the tone back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from conftest import APP_ID, APP_KEY, RawClient, token_payload
from prometheus_client.parser import text_string_to_metric_families

from bot.media import SyntheticVideoTrack, ToneAudioTrack, read_frame_counter
from bot.proto import ErrorCode
from bot.server import RoomServer
from bot.server.forwarding import ForwardedStream, ForwardTrack
from bot.webrtc.patches import receive_tap

Connect = Callable[[], Awaitable[RawClient]]
Peer = Callable[[], RTCPeerConnection]

FPS = 15.0
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{APP_ID}:{APP_KEY}".encode()).decode()}
TONE_HZ = 440.0


# --------------------------------------------------------------------------- no network


def _keyframe(size: int = 40) -> bytes:
    """A VP8 keyframe header (frame tag bit 0 clear, start code, 320x180) and padding."""
    return bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x40, 0x01, 0xB4, 0x00]) + bytes(size - 10)


def _delta(size: int = 20) -> bytes:
    return bytes([0x31]) + bytes(size - 1)


class _Requests:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


async def _take(track: ForwardTrack, n: int) -> list[Any]:
    out = []
    for _ in range(n):
        async with asyncio.timeout(1):
            out.append(await track.recv())
    return out


async def test_a_video_track_starts_at_a_keyframe_and_asks_for_one() -> None:
    requests = _Requests()
    stream = ForwardedStream("video", request=requests)
    stream.push(_keyframe(), 1000)  # nobody attached: dropped, nothing built
    track = stream.track()
    reader = asyncio.create_task(track.recv())
    await asyncio.sleep(0)
    assert stream.subscribers == 1 and requests.count == 1  # attaching asked for a keyframe
    stream.push(_delta(), 4000)
    stream.push(_delta(), 7000)
    assert track.skipped == 2
    stream.push(_keyframe(), 10000)
    stream.push(_delta(), 13000)
    first = await reader
    second = await track.recv()
    assert bytes(first) == _keyframe() and bytes(second) == _delta()
    # pts: the RTP timestamp from the first frame seen, in the 90 kHz clock
    assert (first.pts, second.pts) == (9000, 12000)
    assert first.time_base == stream.time_base and stream.time_base.denominator == 90000
    assert stream.forwarded.packets == 2 and stream.forwarded.bytes == 40 + 20
    track.stop()
    assert stream.subscribers == 0


async def test_timestamps_unwrap_across_the_32_bit_wrap() -> None:
    stream = ForwardedStream("audio")
    track = stream.track()
    reader = asyncio.create_task(_take(track, 3))
    await asyncio.sleep(0)
    for ts in (2**32 - 960, 0, 960):
        stream.push(b"\x78\x01\x02", ts)
    packets = await reader
    assert [p.pts for p in packets] == [0, 960, 1920]
    assert packets[0].time_base.denominator == 48000


async def test_a_slow_subscriber_drops_to_the_next_keyframe_and_never_holds_up_the_others() -> None:
    requests = _Requests()
    stream = ForwardedStream("video", request=requests, queue_size=3, keyframe_interval_s=0.05)
    fast, slow = stream.track(), stream.track()
    got: list[int] = []

    async def read_fast() -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                got.append((await fast.recv()).pts)

    fast_reader = asyncio.create_task(read_fast())
    slow_first = asyncio.create_task(slow.recv())  # attaches, then never reads again
    await asyncio.sleep(0)
    stream.push(_keyframe(), 0)
    await slow_first
    for i in range(1, 10):
        stream.push(_delta(), i * 3000)
        await asyncio.sleep(0)
    assert got == [i * 3000 for i in range(10)]  # the fast one got everything
    assert slow.forwarded.dropped == 3 and stream.forwarded.dropped == 3
    assert slow.skipped > 0  # waiting for a keyframe now
    assert requests.count == 1  # the attach; the drop's request is held (rate limit)
    await asyncio.sleep(0.08)
    assert requests.count == 2  # the held request went out when the interval ended
    stream.push(_keyframe(), 30000)
    await asyncio.sleep(0)
    assert bytes(await slow.recv()) == _keyframe()
    stream.close()
    await asyncio.wait_for(fast_reader, 1)
    with pytest.raises(MediaStreamError):
        await slow.recv()


async def test_a_keyframe_cancels_a_held_request() -> None:
    requests = _Requests()
    stream = ForwardedStream("video", request=requests, keyframe_interval_s=0.05)
    stream.request_keyframe()
    stream.request_keyframe()  # held
    stream.push(_keyframe(), 0)  # ...and answered by this one
    await asyncio.sleep(0.08)
    assert requests.count == 1 and stream.keyframe_requests == 2
    stream.close()


# --------------------------------------------------------------------------- real media


@dataclass
class Received:
    """What one raw subscriber decoded on its side."""

    counters: list[tuple[float, int]] = field(default_factory=list)
    video_frames: int = 0
    audio: list[np.ndarray] = field(default_factory=list)
    paused: bool = False
    ended: set[str] = field(default_factory=set)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def first_video_at(self) -> float | None:
        return self.counters[0][0] if self.counters else None

    def fps(self, since: float) -> float:
        times = [t for t, _ in self.counters if t >= since]
        return 0.0 if len(times) < 2 else (len(times) - 1) / (times[-1] - times[0])

    async def read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if self.paused:
                    continue
                if track.kind == "video":
                    self.video_frames += 1
                    value = read_frame_counter(frame)
                    if value is not None:
                        self.counters.append((time.monotonic(), value))
                else:
                    samples = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
                    self.audio.append(samples.astype(np.float64))
        except MediaStreamError:
            self.ended.add(track.kind)


def _tone_peak_hz(chunks: list[np.ndarray], rate: int = 48000) -> float:
    samples = np.concatenate(chunks)[-rate:]  # the last second
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


@pytest.fixture
async def readers() -> AsyncIterator[list[Received]]:
    made: list[Received] = []
    yield made
    tasks = [t for r in made for t in r.tasks]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _joined(server: RoomServer, room_id: str, connect: Connect, name: str) -> RawClient:
    client = await connect()
    await client.join(server.mint_token(room_id, name=name))
    return client


async def _publish_synthetic(client: RawClient, pc: RTCPeerConnection) -> int:
    tracks = [ToneAudioTrack(TONE_HZ), SyntheticVideoTrack(320, 180, fps=FPS)]
    return await client.publish(pc, tracks=tracks, name="synthetic")


async def _subscribe(client: RawClient, pc: RTCPeerConnection, stream_id: int, made: list[Received]) -> float:
    """Subscribe with a reader per track; returns the time the leg was ready."""
    received = Received()
    made.append(received)
    pc.on("track", lambda track: received.tasks.append(asyncio.create_task(received.read(track))))
    await client.subscribe(pc, stream_id)
    return time.monotonic()


def _stream_view(server: RoomServer, room_id: str, stream_id: int) -> dict[str, Any]:
    for p in server.room_view(room_id)["participants"]:
        for s in p["streams"]:
            if s["id"] == stream_id:
                return dict(s)
    raise AssertionError(f"stream {stream_id} not in the room view")


async def _eventually(check: Callable[[], bool], within: float = 5.0, what: str = "") -> None:
    try:
        async with asyncio.timeout(within):
            while not check():  # noqa: ASYNC110 - polling state, nothing to await
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what or check}") from None


async def test_a_subscriber_gets_the_publishers_frames_and_tone_and_the_server_decodes_nothing(
    room_server: RoomServer,
    room: dict[str, Any],
    raw_client: Connect,
    peer: Peer,
    readers: list[Received],
) -> None:
    room_id = room["room_id"]
    alice = await _joined(room_server, room_id, raw_client, "alice")
    bob = await _joined(room_server, room_id, raw_client, "bob")
    stream_id = await _publish_synthetic(alice, peer())
    await bob.next("onAddStream")
    await asyncio.sleep(1.5)  # mid-stream: aiortc's encoder makes a keyframe every 3000 frames
    ready = await _subscribe(bob, peer(), stream_id, readers)
    got = readers[0]

    await _eventually(lambda: got.first_video_at() is not None, 3, "bob's first video frame")
    first = got.first_video_at()
    assert first is not None
    ttff = first - ready
    print(f"\ntime to first video frame after ready: {ttff * 1000:.0f} ms")
    assert ttff < 0.5

    # bytes forwarded against bytes received, over a window while subscribed
    leg = room_server.media.publish_leg(room_id, stream_id)
    assert leg is not None
    await asyncio.sleep(0.3)
    before = (leg.received_json(), leg.forwarded_json())
    await asyncio.sleep(2.0)
    after = (leg.received_json(), leg.forwarded_json())
    for kind in ("audio", "video"):
        received = after[0][kind]["bytes"] - before[0][kind]["bytes"]
        forwarded = after[1][kind]["bytes"] - before[1][kind]["bytes"]
        packets = after[0][kind]["packets"] - before[0][kind]["packets"]
        print(f"{kind}: received {received} B in {packets} RTP packets, forwarded {forwarded} B")
        # RTP payloads carry a VP8 descriptor (4 bytes here) that the frames do not; a frame
        # or two may sit in the jitter buffer at either end of the window
        slack = 4 * packets + (3000 if kind == "video" else 400)
        assert received > 0 and abs(received - forwarded) <= slack, (kind, received, forwarded)

    # the video plays: the counter advances at the publisher's rate
    values = [v for _, v in got.counters]
    assert values[-1] - values[0] >= 2 * FPS and values == sorted(values)
    assert got.fps(since=first + 0.5) > FPS * 0.8
    # the audio is the tone
    assert abs(_tone_peak_hz(got.audio) - TONE_HZ) < 5

    # nothing was decoded on the server, and no decoder thread runs there (aiortc's ends as it
    # starts: the receive tap stands in for its queue)
    view = _stream_view(room_server, room_id, stream_id)
    assert view["forwarding"] == "packets" and view["decoded_frames"] == 0
    assert view["subscribers"] == 1 and view["keyframe_requests"] >= 1
    assert view["forwarded"]["video"]["packets"] > 2 * FPS
    assert view["received"]["video"]["frames"] >= view["forwarded"]["video"]["packets"]
    for transceiver in leg.pc.getTransceivers():
        assert not receive_tap.decoder_thread_alive(transceiver.receiver)
    # ...while bob's own aiortc receivers, in this same process, decoded as usual
    assert got.video_frames > 0 and got.audio


async def test_a_slow_subscriber_does_not_slow_the_other(
    room_server: RoomServer,
    room: dict[str, Any],
    raw_client: Connect,
    peer: Peer,
    readers: list[Received],
) -> None:
    room_id = room["room_id"]
    alice = await _joined(room_server, room_id, raw_client, "alice")
    bob = await _joined(room_server, room_id, raw_client, "bob")
    carol = await _joined(room_server, room_id, raw_client, "carol")
    stream_id = await _publish_synthetic(alice, peer())
    leg = room_server.media.publish_leg(room_id, stream_id)
    assert leg is not None
    forwarder = leg.forwarder
    assert forwarder.mode == "packets"
    forwarder.streams["video"].queue_size = 5  # tracks made from now on: a small queue
    await _subscribe(bob, peer(), stream_id, readers)
    await _subscribe(carol, peer(), stream_id, readers)
    readers[1].paused = True  # carol stops reading

    # ...and her link stalls: her leg's sender waits a second per packet
    carol_leg = room_server.media.subscribe_leg(room_id, carol.client_id or "", stream_id)
    assert carol_leg is not None
    transport = carol_leg.pc.getSenders()[0].transport
    send_rtp = transport._send_rtp

    async def stalled(data: bytes) -> None:
        await asyncio.sleep(1.0)
        await send_rtp(data)

    transport._send_rtp = stalled
    start = time.monotonic()
    await asyncio.sleep(3.0)

    bob_fps = readers[0].fps(since=start)
    carol_view = carol_leg.forwarded_json()["video"]
    print(f"\nbob: {bob_fps:.1f} fps; carol: dropped {carol_view['dropped']} video frames")
    assert bob_fps > FPS * 0.85
    bob_leg = room_server.media.subscribe_leg(room_id, bob.client_id or "", stream_id)
    assert bob_leg is not None and bob_leg.forwarded_json()["video"]["dropped"] == 0
    assert carol_view["dropped"] > 0
    assert forwarder.streams["video"].keyframe_requests >= 3  # two attaches and carol's drops


async def test_unpublish_and_leave_close_the_forwarding_legs(
    room_server: RoomServer,
    room: dict[str, Any],
    raw_client: Connect,
    peer: Peer,
    readers: list[Received],
) -> None:
    room_id = room["room_id"]
    alice = await _joined(room_server, room_id, raw_client, "alice")
    bob = await _joined(room_server, room_id, raw_client, "bob")
    baseline = set(asyncio.all_tasks())

    for leave in ("unpublish", "drop"):
        publisher, subscriber = peer(), peer()
        stream_id = await _publish_synthetic(alice, publisher)
        await bob.next("onAddStream", lambda p, s=stream_id: p["id"] == s)
        await _subscribe(bob, subscriber, stream_id, readers)
        got = readers[-1]
        await _eventually(lambda g=got: g.video_frames > 3, 3, "frames")  # type: ignore[misc]
        sub_leg = room_server.media.subscribe_leg(room_id, bob.client_id or "", stream_id)
        pub_leg = room_server.media.publish_leg(room_id, stream_id)
        assert sub_leg is not None and pub_leg is not None
        tracks = list(pub_leg.forwarder.streams.values())
        assert sum(s.subscribers for s in tracks) == 2

        if leave == "unpublish":
            assert await alice.ack("unpublish", stream_id) == {"result": 0}
        else:
            assert await alice.ack("drop", {"self": True}) == {"result": 0}
        assert await bob.next("onRemoveStream", lambda p, s=stream_id: p["id"] == s) == {"id": stream_id}
        await _eventually(lambda leg=sub_leg: leg.state == "closed", 3, "the server closing bob's leg")
        assert sub_leg.end_reason == "server_closed"
        assert sum(s.subscribers for s in tracks) == 0
        assert room_server.media.subscribe_leg(room_id, bob.client_id or "", stream_id) is None
        # bob's side of the leg ends too (the server's DTLS close)
        await _eventually(lambda pc=subscriber: pc.connectionState == "closed", 5, "bob's leg closed")
        await _eventually(lambda pc=publisher: pc.connectionState == "closed", 5, "alice's leg closed")
        await _eventually(lambda g=got: g.ended == {"audio", "video"}, 3, "bob's tracks ended")
        view = room_server.room_view(room_id)
        assert all(p["subscriptions"] == [] for p in view["participants"])
        if leave == "drop":
            break
        await asyncio.sleep(0.2)

    await _eventually(lambda: room_server.media.leg_count == 0, 5, "no legs")
    await asyncio.sleep(0.5)  # aiortc's transports wind down
    leaked = [t for t in asyncio.all_tasks() - baseline if _media_task(t)]
    assert not leaked, [repr(t) for t in leaked]


def _media_task(task: asyncio.Task[Any]) -> bool:
    """A task of the server's media side or of aiortc/aioice (not signalling's timers, nor the
    Socket.IO clients')."""
    coro = task.get_coro()
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    where = "" if code is None else code.co_filename
    return not task.done() and any(
        part in where for part in ("aiortc", "aioice", "server/media.py", "server/forwarding.py")
    )


async def _scrape(server: RoomServer) -> dict[str, float]:
    """``GET /metrics`` (no credentials): sample name with labels -> value."""
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/metrics") as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = await reply.text()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


async def test_metrics_are_scraped_over_http_and_move(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect, peer: Peer, readers: list[Received]
) -> None:
    room_id = room["room_id"]
    empty = await _scrape(room_server)
    assert empty["enx_server_rooms"] == 1
    assert empty[f"enx_server_participants{{room={room_id}}}"] == 0
    assert empty["enx_server_joins_total"] == 0 and empty["enx_server_forwarded_packets_total"] == 0
    assert "process_cpu_seconds_total" in empty

    alice = await _joined(room_server, room_id, raw_client, "alice")
    bob = await _joined(room_server, room_id, raw_client, "bob")
    stream_id = await _publish_synthetic(alice, peer())
    await _subscribe(bob, peer(), stream_id, readers)
    await _eventually(lambda: readers[0].video_frames > 3, 3, "frames")
    refused = await raw_client()
    bad = {**token_payload(room_server.mint_token(room_id, "eve")), "tokenId": "not.a.jwt"}
    assert (await refused.ack("token", bad))["result"] == ErrorCode.TOKEN_INVALID
    async with (
        aiohttp.ClientSession(headers=AUTH) as http,
        http.post(
            f"{room_server.url}/emulator/rooms/{room_id}/bandwidth",
            json={"client_ids": [alice.client_id], "bandwidth": 100},
        ) as reply,
    ):
        assert reply.status == 200

    busy = await _scrape(room_server)
    assert busy[f"enx_server_participants{{room={room_id}}}"] == 2
    assert busy["enx_server_joins_total"] == 2
    assert busy["enx_server_streams_published"] == 1 and busy["enx_server_streams_forwarded"] == 1
    assert busy["enx_server_forwarded_packets_total"] > 0 and busy["enx_server_forwarded_bytes_total"] > 0
    assert busy["enx_server_bandwidth_alerts_total{kind=publisher}"] == 1
    assert busy[f"enx_server_join_refusals_total{{code={int(ErrorCode.TOKEN_INVALID)}}}"] == 1
    await asyncio.sleep(0.5)
    later = await _scrape(room_server)
    assert later["enx_server_forwarded_packets_total"] > busy["enx_server_forwarded_packets_total"]
    assert later["enx_server_forwarded_bytes_total"] > busy["enx_server_forwarded_bytes_total"]
    # the registry is the server's own: another server in this process starts from zero
    async with RoomServer(APP_ID, APP_KEY, port=0) as other:
        assert (await _scrape(other))["enx_server_joins_total"] == 0
    assert room_server.registry.get_sample_value("enx_server_joins_total") == 2


def _count_receiver_reports(pc: RTCPeerConnection) -> dict[int, list[int]]:
    """Per SSRC of this publisher's senders, the highest sequence number of every RTCP
    receiver report block the server sent it (instrumenting the test's own peer)."""
    from aiortc.rtp import RtcpRrPacket

    seen: dict[int, list[int]] = {}
    for sender in pc.getSenders():
        handle = sender._handle_rtcp_packet

        async def counting(packet: Any, handle: Any = handle) -> None:
            if isinstance(packet, RtcpRrPacket):
                for report in packet.reports:
                    seen.setdefault(report.ssrc, []).append(report.highest_sequence)
            await handle(packet)

        sender._handle_rtcp_packet = counting  # type: ignore[method-assign]
    return seen


async def test_a_kind_nobody_subscribes_to_is_counted_on_the_lean_intake(
    room_server: RoomServer,
    room: dict[str, Any],
    raw_client: Connect,
    peer: Peer,
    readers: list[Received],
) -> None:
    room_id = room["room_id"]
    alice = await _joined(room_server, room_id, raw_client, "alice")
    bob = await _joined(room_server, room_id, raw_client, "bob")
    publisher = peer()
    stream_id = await _publish_synthetic(alice, publisher)
    reports = _count_receiver_reports(publisher)
    await bob.next("onAddStream")
    await asyncio.sleep(1.0)

    def sample() -> tuple[float, dict[str, Any]]:
        return time.monotonic(), _stream_view(room_server, room_id, stream_id)

    def rates(
        a: tuple[float, dict[str, Any]], b: tuple[float, dict[str, Any]], kind: str
    ) -> tuple[float, float]:
        span = b[0] - a[0]
        got = [b[1]["received"][kind][k] - a[1]["received"][kind][k] for k in ("packets", "frames")]
        return got[0] / span, got[1] / span

    # nobody subscribes: every RTP packet is counted on the lean path, at the publisher's rates
    t0 = sample()
    rr0 = {ssrc: len(v) for ssrc, v in reports.items()}
    await asyncio.sleep(2.0)
    t1 = sample()
    lean = t1[1]["lean_packets"] - t0[1]["lean_packets"]
    packets = sum(
        t1[1]["received"][k]["packets"] - t0[1]["received"][k]["packets"] for k in ("audio", "video")
    )
    print(
        f"\nlean: {lean} of {packets} packets; video {rates(t0, t1, 'video')}, audio {rates(t0, t1, 'audio')}"
    )
    assert packets > 100 and lean == packets
    assert 0.85 * FPS <= rates(t0, t1, "video")[1] <= 1.15 * FPS
    assert 45 <= rates(t0, t1, "audio")[0] <= 55 and rates(t0, t1, "audio")[1] == rates(t0, t1, "audio")[0]
    # ...and aiortc's receiver reports went on, their highest sequence moving with the media
    assert len(reports) == 2
    for ssrc, highest in reports.items():
        assert len(highest) - rr0.get(ssrc, 0) >= 1 and highest[-1] > highest[rr0.get(ssrc, 1) - 1], ssrc

    # an audio-only subscriber: audio goes back to aiortc's path (and is forwarded), video stays lean
    subscriber = peer()
    received = Received()
    readers.append(received)
    subscriber.on("track", lambda track: received.tasks.append(asyncio.create_task(received.read(track))))
    await bob.subscribe(subscriber, stream_id, video=False)
    await _eventually(lambda: len(received.audio) > 10, 3, "bob's audio")
    t2 = sample()
    await asyncio.sleep(1.5)
    t3 = sample()
    lean = t3[1]["lean_packets"] - t2[1]["lean_packets"]
    video = t3[1]["received"]["video"]["packets"] - t2[1]["received"]["video"]["packets"]
    audio_forwarded = t3[1]["forwarded"]["audio"]["packets"] - t2[1]["forwarded"]["audio"]["packets"]
    assert video > 0 and lean == video
    assert audio_forwarded >= 40 * 1.5 * 0.85
    assert abs(_tone_peak_hz(received.audio) - TONE_HZ) < 5
    assert 0.85 * FPS <= rates(t2, t3, "video")[1] <= 1.15 * FPS

    # unsubscribed: audio is lean again
    assert await bob.ack("unsubscribe", {"streamId": stream_id}) == {"result": 0}
    await asyncio.sleep(0.5)
    t4 = sample()
    await asyncio.sleep(1.0)
    t5 = sample()
    lean = t5[1]["lean_packets"] - t4[1]["lean_packets"]
    packets = sum(
        t5[1]["received"][k]["packets"] - t4[1]["received"][k]["packets"] for k in ("audio", "video")
    )
    assert packets > 50 and lean == packets


async def test_the_full_intake_counts_the_same_without_the_lean_path(peer: Peer) -> None:
    async with RoomServer(APP_ID, APP_KEY, port=0, lean_intake=False) as server:
        room_id = server.create_room(name="full")["room_id"]
        client = RawClient()
        await client.connect(server.url)
        try:
            await client.join(server.mint_token(room_id, name="alice"))
            stream_id = await _publish_synthetic(client, peer())
            await asyncio.sleep(1.0)
            t0 = time.monotonic(), _stream_view(server, room_id, stream_id)
            await asyncio.sleep(2.0)
            t1 = time.monotonic(), _stream_view(server, room_id, stream_id)
        finally:
            await client.close()
    assert t1[1]["lean_packets"] is None
    span = t1[0] - t0[0]
    frames = (t1[1]["received"]["video"]["frames"] - t0[1]["received"]["video"]["frames"]) / span
    assert 0.85 * FPS <= frames <= 1.15 * FPS


def test_vp8_keyframes_are_recognised_in_rtp_payloads() -> None:
    from aiortc.codecs.vpx import Vp8Encoder

    from bot.webrtc.patches.lean_intake import vp8_starts_keyframe

    header = bytes(12)
    for picture_id in (5, 300):  # a 7-bit and a 15-bit PictureID
        key = Vp8Encoder._packetize(_keyframe(3000), picture_id)
        delta = Vp8Encoder._packetize(_delta(3000), picture_id)
        assert len(key) > 1 and len(delta) > 1
        assert vp8_starts_keyframe(header + key[0], 12)
        assert not any(vp8_starts_keyframe(header + p, 12) for p in key[1:])  # not a partition start
        assert not any(vp8_starts_keyframe(header + p, 12) for p in delta)
    # no extension byte at all: S=1, PID=0, then the VP8 header
    assert vp8_starts_keyframe(header + b"\x10" + _keyframe(), 12)
    assert not vp8_starts_keyframe(header + b"\x10" + _delta(), 12)
    assert not vp8_starts_keyframe(header + b"\x90\x80", 12)  # truncated
