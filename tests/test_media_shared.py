"""bot.media shared sources: one encoding (or one file reader) per process, many sending bots."""

from __future__ import annotations

import asyncio
import fractions
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bot.media import (
    EncodedFileSource,
    Kind,
    MediaSourceError,
    MediaSpec,
    Packet,
    PacketTrack,
    SharedMedia,
    SyntheticVideoEncoder,
    SyntheticVideoTrack,
    ToneAudioEncoder,
    read_frame_counter,
)

FPS = 15


# --- helpers -------------------------------------------------------------------------------------


async def pull(track: MediaStreamTrack, count: int) -> list[Packet]:
    out = []
    for _ in range(count):
        packet = await track.recv()
        assert isinstance(packet, av.Packet)
        out.append(packet)
    return out


async def pull_for(track: MediaStreamTrack, seconds: float) -> list[tuple[float, Packet]]:
    """Packets received for ``seconds``, each with its arrival time."""
    out: list[tuple[float, Packet]] = []
    t0 = time.monotonic()
    while (left := seconds - (time.monotonic() - t0)) > 0:
        try:
            packet = await asyncio.wait_for(track.recv(), left)
        except TimeoutError:
            break
        assert isinstance(packet, av.Packet)
        out.append((time.monotonic() - t0, packet))
    return out


def decode_vp8(packets: list[Packet]) -> list[int]:
    """The frame counters of the VP8 packets, decoded with FFmpeg's vp8 decoder."""
    decoder = av.CodecContext.create("vp8", "r")
    assert isinstance(decoder, av.VideoCodecContext)
    out = []
    for packet in packets:
        for frame in decoder.decode(av.Packet(bytes(packet))):
            counter = read_frame_counter(frame)
            assert counter is not None, "a frame without a readable counter"
            out.append(counter)
    return out


def pts_steps(got: list[tuple[float, Packet]]) -> set[int]:
    pts = [p.pts for _, p in got]
    assert None not in pts
    return {b - a for a, b in itertools.pairwise(pts)}  # type: ignore[operator]


def write_vp8_ivf(path: Path, *, frames: int = FPS, gop: int = 5) -> Path:
    """``frames`` of VP8 320x180 at 15 fps (frame i shows counter i), a keyframe every ``gop``."""
    source = SyntheticVideoTrack(320, 180, FPS)
    with av.open(str(path), "w", format="ivf") as container:
        stream = container.add_stream("libvpx", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.bit_rate, stream.gop_size = 300_000, gop
        stream.options = {"deadline": "realtime", "lag-in-frames": "0", "cpu-used": "8"}
        for i in range(frames):
            frame = source.make_frame(i)
            frame.pts, frame.time_base = i, fractions.Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_h264_ts(path: Path, *, bframes: bool = False) -> Path:
    """One second of H.264 320x180@15 in MPEG-TS (Annex-B), GOP 5."""
    source = SyntheticVideoTrack(320, 180, FPS)
    fmt = "mp4" if bframes else "mpegts"
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.gop_size = 5
        stream.options = {} if bframes else {"tune": "zerolatency", "profile": "baseline"}
        for i in range(FPS):
            frame = source.make_frame(i)
            frame.pts, frame.time_base = i, fractions.Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_opus_ogg(path: Path, seconds: float = 1.0) -> Path:
    """A 440 Hz tone in 20 ms Opus packets."""
    with av.open(str(path), "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=48000)
        stream.layout = "mono"
        t = np.arange(round(48000 * seconds)) / 48000
        pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
        for k in range(0, len(pcm), 960):
            chunk = av.AudioFrame.from_ndarray(pcm[k : k + 960].reshape(1, -1), format="s16", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = 48000, k, fractions.Fraction(1, 48000)
            container.mux(stream.encode(chunk))
        container.mux(stream.encode(None))
    return path


def write_junk(directory: Path) -> str:
    path = directory / "junk.webm"
    path.write_bytes(b"not a media file" * 64)
    return str(path)


def write_mpeg4_avi(path: Path) -> Path:
    source = SyntheticVideoTrack(320, 180, FPS)
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        for i in range(5):
            frame = source.make_frame(i)
            frame.pts, frame.time_base = i, fractions.Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


async def until(predicate: Callable[[], bool], within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# --- one encoder, many subscribers --------------------------------------------------------------


async def test_two_subscribers_get_the_same_packets_from_one_encoding() -> None:
    async with SyntheticVideoEncoder(640, 360, FPS) as encoder:
        a, b = encoder.track(), encoder.track()
        assert not encoder.running  # nothing is encoded before someone pulls
        pa, pb = await asyncio.gather(pull(a, 20), pull(b, 20))
        assert encoder.frames_encoded == 20  # once for both, not once per subscriber
        assert pa[0] is pb[0] and pa[0].is_keyframe  # the same packet object, a keyframe first
        assert [p.pts for p in pa] == [i * 6000 for i in range(20)]  # 90 kHz at 15 fps
        assert all(p.time_base == fractions.Fraction(1, 90000) for p in pa)
        assert decode_vp8(pa) == list(range(20))
        assert a.mime_type == "video/VP8" and a.kind == "video"


async def test_twenty_subscribers_cost_one_encoding_at_the_source_rate() -> None:
    async with SyntheticVideoEncoder(640, 360, FPS) as encoder:
        tracks = [encoder.track() for _ in range(20)]
        t0 = time.monotonic()
        got = await asyncio.gather(*(pull_for(t, 2.0) for t in tracks))
        elapsed = time.monotonic() - t0
        expected = elapsed * FPS
        assert expected - 2 <= encoder.frames_encoded <= expected + 2
        counts = [len(g) for g in got]
        assert min(counts) >= encoder.frames_encoded - 2, counts
        assert all(t.packets_dropped == 0 for t in tracks)
        counters = decode_vp8([p for _, p in got[7]])
        assert counters == list(range(counters[0], counters[0] + len(counters)))


async def test_late_subscriber_starts_at_a_keyframe_soon() -> None:
    async with SyntheticVideoEncoder(320, 180, FPS, keyframe_interval=None) as encoder:
        first = encoder.track()
        await pull(first, 15)  # one second in: the only keyframe so far is the first frame
        late = encoder.track()
        t0 = time.monotonic()
        (packet,) = await pull(late, 1)
        assert packet.is_keyframe
        assert time.monotonic() - t0 < 0.3  # asked for on subscribing, not left to the GOP
        assert late.packets_skipped <= 1
        more = await pull(late, 5)
        counters = decode_vp8([packet, *more])
        assert counters == list(range(counters[0], counters[0] + 6)) and counters[0] >= 15
        first.stop()


async def test_encoder_runs_only_while_subscribed_and_timestamps_follow_the_clock() -> None:
    async with SyntheticVideoEncoder(320, 180, FPS) as encoder:
        track = encoder.track()
        await pull(track, 3)
        assert encoder.running and encoder.subscribers == 1
        track.stop()
        await until(lambda: not encoder.running, within=0.5)
        frames = encoder.frames_encoded
        await asyncio.sleep(0.4)
        assert encoder.frames_encoded == frames  # idle costs nothing
        again = encoder.track()
        (packet,) = await pull(again, 1)
        assert packet.is_keyframe and encoder.runs == 2
        # Timestamps kept the wall clock across the idle gap: about 0.6 s after the start.
        assert 0.5 * 90000 < (packet.pts or 0) < 0.8 * 90000
        with pytest.raises(MediaStreamError):
            again.stop()
            await again.recv()


async def test_slow_subscriber_drops_old_packets_and_never_blocks_the_others() -> None:
    async with SyntheticVideoEncoder(320, 180, FPS, queue_size=5) as encoder:
        fast, slow = encoder.track(), encoder.track()
        await asyncio.gather(pull(fast, 1), pull(slow, 1))  # both subscribed; slow stops reading
        got = await pull_for(fast, 1.0)
        assert len(got) >= FPS - 2 and fast.packets_dropped == 0
        assert slow.packets_dropped > 0
        assert len(slow._queue) <= 5
        # Video recovers at a keyframe: the slow one resumes with a decodable stream.
        resumed = await pull(slow, 4)
        assert resumed[0].is_keyframe
        counters = decode_vp8(resumed)
        assert counters == list(range(counters[0], counters[0] + 4))

    async with ToneAudioEncoder(queue_size=5) as tone:
        fast, slow = tone.track(), tone.track()
        await asyncio.gather(pull(fast, 1), pull(slow, 1))
        await pull_for(fast, 0.4)
        assert fast.packets_dropped == 0 and slow.packets_dropped > 0 and len(slow._queue) == 5


async def test_request_keyframe_forces_the_next_frame_rate_limited() -> None:
    async with SyntheticVideoEncoder(320, 180, FPS, keyframe_interval=None, min_keyframe_gap=0.5) as encoder:
        track = encoder.track()
        (first,) = await pull(track, 1)
        assert first.is_keyframe
        later = await pull(track, 9)  # 0.6 s: no keyframe unless asked
        assert not any(p.is_keyframe for p in later)
        track.request_keyframe()  # the track forwards to the encoder
        (forced,) = await pull(track, 1)
        assert forced.is_keyframe
        encoder.request_keyframe()  # inside the 0.5 s gap: deferred, not lost
        t_forced = time.monotonic()
        gap = await pull(track, 5)
        assert not any(p.is_keyframe for p in gap)
        for _ in range(5):
            (packet,) = await pull(track, 1)
            if packet.is_keyframe:
                break
        else:
            pytest.fail("the deferred keyframe request was lost")
        assert 0.45 <= time.monotonic() - t_forced <= 0.7
        assert encoder.keyframe_requests >= 3 and encoder.keyframes == 3


async def test_shared_tone_is_one_opus_encoding() -> None:
    async with ToneAudioEncoder(440.0) as tone:
        a, b = tone.track(), tone.track()
        pa, _ = await asyncio.gather(pull(a, 25), pull(b, 25))
        assert tone.frames_encoded == 25 and a.mime_type == "audio/opus"
        assert [p.pts for p in pa] == [i * 960 for i in range(25)]
        decoder = av.CodecContext.create("opus", "r")
        assert isinstance(decoder, av.AudioCodecContext)
        decoder.sample_rate, decoder.layout = 48000, "mono"
        pcm = np.concatenate(
            [f.to_ndarray().reshape(-1) for p in pa for f in decoder.decode(av.Packet(bytes(p)))]
        )
        spectrum = np.abs(np.fft.rfft(pcm[4800:].astype(float)))
        freqs = np.fft.rfftfreq(len(pcm) - 4800, 1 / 48000)
        assert abs(freqs[spectrum.argmax()] - 440) < 10


# --- over real WebRTC ---------------------------------------------------------------------------


async def _connect(
    *tracks: PacketTrack,
) -> tuple[RTCPeerConnection, RTCPeerConnection, list[MediaStreamTrack]]:
    """An in-process aiortc pair sending ``tracks``, each in its own codec; the received tracks."""
    pc1 = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc2 = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    received: list[MediaStreamTrack] = []
    pc2.on("track", received.append)
    for track in tracks:
        transceiver = pc1.addTransceiver(track, direction="sendonly")
        # The sender packs with the negotiated codec, so it must be the packets' codec.
        caps = RTCRtpSender.getCapabilities(track.kind).codecs
        transceiver.setCodecPreferences([c for c in caps if c.mimeType.lower() == track.mime_type.lower()])
    await pc1.setLocalDescription(await pc1.createOffer())
    await pc2.setRemoteDescription(pc1.localDescription)
    await pc2.setLocalDescription(await pc2.createAnswer())
    await pc1.setRemoteDescription(pc2.localDescription)
    return pc1, pc2, received


def forward_keyframe_requests(sender: RTCRtpSender, track: PacketTrack) -> None:
    """The proposed rtc-layer hook: aiortc calls ``sender._send_keyframe()`` on PLI and FIR."""
    original = sender._send_keyframe

    def send_keyframe() -> None:
        original()
        track.request_keyframe()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]


async def test_two_peer_connections_send_one_shared_encoding() -> None:
    async with SyntheticVideoEncoder(640, 360, FPS) as encoder, ToneAudioEncoder() as tone:
        pairs = [await _connect(encoder.track(), tone.track()) for _ in range(2)]
        try:
            videos = [next(t for t in received if t.kind == "video") for _, _, received in pairs]
            audios = [next(t for t in received if t.kind == "audio") for _, _, received in pairs]
            t0 = time.monotonic()
            frames_before = encoder.frames_encoded

            async def read_video(track: MediaStreamTrack) -> list[int]:
                out = []
                for _ in range(20):
                    frame = await asyncio.wait_for(track.recv(), 5)
                    assert isinstance(frame, av.VideoFrame)
                    counter = read_frame_counter(frame)
                    assert counter is not None
                    out.append(counter)
                return out

            counters = await asyncio.gather(*(read_video(t) for t in videos))
            for c in counters:
                assert c == sorted(c) and c[-1] - c[0] <= 22  # consecutive but for rare losses
            for audio in audios:
                frame = await asyncio.wait_for(audio.recv(), 5)
                assert isinstance(frame, av.AudioFrame)
            elapsed = time.monotonic() - t0
            # One encoding for both connections, at the source rate.
            assert encoder.frames_encoded - frames_before <= elapsed * FPS + 3
            assert encoder.subscribers == 2 and tone.subscribers == 2

            # PLI from a receiver reaches the shared encoder through the proposed hook.
            pc1, pc2, _ = pairs[0]
            sender = next(s for s in pc1.getSenders() if s.track and s.track.kind == "video")
            assert isinstance(sender.track, PacketTrack)
            forward_keyframe_requests(sender, sender.track)
            receiver = next(r for r in pc2.getReceivers() if r.track.kind == "video")
            requests = encoder.keyframe_requests
            await receiver._send_rtcp_pli(sender._ssrc)
            await until(lambda: encoder.keyframe_requests > requests)
        finally:
            for pc1, pc2, _ in pairs:
                await pc1.close()
                await pc2.close()
        assert encoder.subscribers == 0  # closing the connections stopped the tracks


async def test_pre_encoded_h264_goes_through_webrtc(tmp_path: Path) -> None:
    async with EncodedFileSource(str(write_h264_ts(tmp_path / "clip.ts"))) as source:
        track = source.video_track()
        assert track is not None and track.mime_type == "video/H264"
        pc1, pc2, received = await _connect(track)
        try:
            frames = [await asyncio.wait_for(received[0].recv(), 5) for _ in range(8)]
            counters = [read_frame_counter(f) for f in frames if isinstance(f, av.VideoFrame)]
            assert len(counters) == 8 and None not in counters
        finally:
            await pc1.close()
            await pc2.close()


# --- pre-encoded files ----------------------------------------------------------------------------


async def test_pre_encoded_loops_keep_pace_and_timestamps(tmp_path: Path) -> None:
    video = EncodedFileSource(str(write_vp8_ivf(tmp_path / "clip.ivf")))
    audio = EncodedFileSource(str(write_opus_ogg(tmp_path / "tone.ogg")))
    assert video.duration == pytest.approx(1.0) and audio.duration == pytest.approx(1.0, abs=0.03)
    async with video, audio:
        vt, at, vt2 = video.video_track(), audio.audio_track(), video.video_track()
        assert vt is not None and at is not None and vt2 is not None
        assert at.mime_type == "audio/opus"
        got_v, got_a, got_v2 = await asyncio.gather(pull_for(vt, 3.5), pull_for(at, 3.5), pull_for(vt2, 3.5))
        assert video.video is not None and video.video.runs == 1 and video.video.loops == 3
        for got, rate in ((got_v, FPS), (got_a, 50)):
            per_second = [sum(1 for t, _ in got if s <= t < s + 1) for s in range(3)]
            assert all(abs(n - rate) <= 1 for n in per_second), per_second
        # Timestamps strictly increasing and evenly spaced across the loop boundaries.
        assert pts_steps(got_v) == {6000} and pts_steps(got_a) == {960}
        counters = decode_vp8([p for _, p in got_v])
        assert counters[:35] == [*range(15), *range(15), *range(5)]
        assert [p for _, p in got_v2][:10] == [p for _, p in got_v][:10]  # one reader, shared


def write_av_webm(path: Path, seconds: int = 2) -> Path:
    """VP8 320x180@15 (keyframe every 5 frames) and a 440 Hz Opus tone, ``seconds`` long."""
    source = SyntheticVideoTrack(320, 180, FPS)
    with av.open(str(path), "w", format="webm") as container:
        vs = container.add_stream("libvpx", rate=FPS)
        aus = container.add_stream("libopus", rate=48000)
        vs.width, vs.height, vs.pix_fmt, vs.gop_size = 320, 180, "yuv420p", 5
        vs.options = {"deadline": "realtime", "lag-in-frames": "0"}
        aus.layout = "mono"
        for i in range(FPS * seconds):
            frame = source.make_frame(i)
            frame.pts, frame.time_base = i, fractions.Fraction(1, FPS)
            container.mux(vs.encode(frame))
        container.mux(vs.encode(None))
        pcm = (np.sin(2 * np.pi * 440 * np.arange(48000 * seconds) / 48000) * 8000).astype(np.int16)
        for k in range(0, len(pcm), 960):
            chunk = av.AudioFrame.from_ndarray(pcm[k : k + 960].reshape(1, -1), format="s16", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = 48000, k, fractions.Fraction(1, 48000)
            container.mux(aus.encode(chunk))
        container.mux(aus.encode(None))
    return path


async def test_late_file_subscribers_join_where_the_file_is(tmp_path: Path) -> None:
    async with EncodedFileSource(str(write_av_webm(tmp_path / "av.webm"))) as source:
        first = source.video_track()
        assert first is not None
        await pull(first, 10)  # frames 0..9: the file is at 0.67 s
        late = source.video_track()
        audio = source.audio_track()
        assert late is not None and audio is not None
        (packet,), (sound,) = await asyncio.gather(pull(late, 1), pull(audio, 1))
        # Video joins at the next keyframe of the file (frame 10), not at the start of the file.
        assert packet.is_keyframe and abs((packet.pts or 0) - 10 * 6000) <= 90  # WebM keeps ms
        # Audio starts on the same clock: where the video is, not at 0.
        assert 0.6 < (sound.pts or 0) / 48000 < 0.75
        assert source.video is not None and source.video.runs == 1
        for track in (first, late, audio):
            track.stop()


async def test_file_played_once_ends_its_tracks(tmp_path: Path) -> None:
    async with EncodedFileSource(str(write_opus_ogg(tmp_path / "short.ogg", 0.2)), loop=False) as source:
        track = source.audio_track()
        assert track is not None
        assert source.audio is not None
        expected = len(source.audio.clip)  # 10 packets, and one for the encoder's look-ahead
        t0 = time.monotonic()
        got = await pull(track, expected)
        with pytest.raises(MediaStreamError):
            await asyncio.wait_for(track.recv(), 1)
        assert expected * 0.02 - 0.05 < time.monotonic() - t0 < expected * 0.02 + 0.1
        assert [p.pts for p in got] == [i * 960 for i in range(expected)]
        assert track.readyState == "ended"


def test_other_containers_and_codecs_load(tmp_path: Path) -> None:
    ts = EncodedFileSource(str(write_h264_ts(tmp_path / "clip.ts")))
    assert ts.video is not None and ts.video.mime_type == "video/H264"
    assert sum(ts.video.clip.keyframes) == 3
    for payload, key in zip(ts.video.clip.payloads, ts.video.clip.keyframes, strict=True):
        assert payload.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01"))  # Annex-B
        if key:
            assert b"\x00\x00\x01\x67" in payload  # carries its SPS
    wav = tmp_path / "alaw.wav"
    with av.open(str(wav), "w") as container:
        stream = container.add_stream("pcm_alaw", rate=8000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 8000), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    pcma = EncodedFileSource(str(wav))
    assert pcma.audio is not None and pcma.audio.mime_type == "audio/PCMA"
    assert {len(p) for p in pcma.audio.clip.payloads} == {160} and len(pcma.audio.clip) == 50


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: str(d / "missing.webm"), ["does not exist"]),
        (lambda d: str(d), ["is a directory"]),
        (write_junk, ["PyAV"]),
        (lambda d: str(write_mpeg4_avi(d / "old.avi")), ["mpeg4", "re-encode"]),
        (lambda d: str(write_h264_ts(d / "b.mp4", bframes=True)), ["B-frames", "-bf 0"]),
    ],
    ids=["missing", "directory", "not-media", "mpeg4-part2", "h264-bframes"],
)
def test_bad_files_fail_at_construction_with_one_line(
    tmp_path: Path, make: Callable[[Path], str], words: list[str]
) -> None:
    path = make(tmp_path)
    with pytest.raises(MediaSourceError) as info:
        EncodedFileSource(path)
    message = str(info.value)
    assert "\n" not in message and repr(path) in message
    for word in words:
        assert word in message


# --- the process registry ---------------------------------------------------------------------


async def test_shared_media_gives_every_bot_tracks_of_one_source(tmp_path: Path) -> None:
    clip = str(write_vp8_ivf(tmp_path / "clip.ivf"))
    async with SharedMedia() as media:
        spec = MediaSpec(width=320, height=180, fps=FPS)
        bots = [media.tracks(spec, audio=True, video=True) for _ in range(5)]
        assert all(a is not None and v is not None for a, v in bots)
        other = media.video_track(MediaSpec(width=640, height=360, fps=FPS))
        assert {id(v.stream) for _, v in bots if v} == {id(bots[0][1].stream)} != {id(other.stream)}  # type: ignore[union-attr]
        file_spec = MediaSpec(kind="file", file=clip)
        audio, video = media.tracks(file_spec, audio=True, video=True)
        assert audio is None and video is not None  # a video-only file publishes video
        assert media.video_track(file_spec).stream is video.stream  # type: ignore[union-attr]
        with pytest.raises(MediaSourceError, match="has no audio stream"):
            media.tracks(file_spec, audio=True, video=False)
        a0, v0 = bots[0]
        assert a0 is not None and v0 is not None
        await asyncio.gather(pull(a0, 2), pull(v0, 2))
        assert len(media.streams) == 4
    with pytest.raises(MediaStreamError):
        await v0.recv()  # closing the registry ended its tracks
    with pytest.raises(MediaSourceError, match="closed"):
        media.video_track(spec)


class _ListSink:
    """A direct sink (bot.media.PacketSink) that keeps what it is handed and when."""

    def __init__(self, kind: Kind) -> None:
        self.kind: Kind = kind
        self.got: list[tuple[float, Packet, bool]] = []

    def deliver(self, packet: Packet, keyframe: bool) -> None:
        self.got.append((time.monotonic(), packet, keyframe))

    def failed(self, error: BaseException) -> None:
        self.error = error


class _BrokenSink(_ListSink):
    """Raises on its third packet."""

    def deliver(self, packet: Packet, keyframe: bool) -> None:
        super().deliver(packet, keyframe)
        if len(self.got) == 3:
            raise RuntimeError("broken sender")


async def test_direct_sinks_get_each_packet_as_it_is_made_and_stop_the_encoder_when_gone() -> None:
    async with SyntheticVideoEncoder(160, 90, FPS, keyframe_interval=None, min_keyframe_gap=0) as encoder:
        a, b = _ListSink("video"), _ListSink("video")
        encoder.attach(a)
        encoder.attach(a)  # attaching twice is once
        assert encoder.subscribers == 1 and encoder.running
        await asyncio.sleep(0.5)
        encoder.attach(b)
        track = encoder.track()
        both = await pull(track, 1)  # a track next to sinks: the same objects
        await asyncio.sleep(1.0)
        assert encoder.subscribers == 3
        assert a.got[0][2] and decode_vp8([p for _, p, _ in a.got])  # starts on a keyframe, decodes
        shared = {id(p) for _, p, _ in a.got} & {id(p) for _, p, _ in b.got}
        assert len(shared) == len(b.got) > 10 and id(both[0]) in shared  # one encoding for all
        assert encoder.frames_encoded == len(a.got)
        rate = (len(a.got) - 1) / (a.got[-1][0] - a.got[0][0])
        assert FPS * 0.85 < rate < FPS * 1.15
        track.stop()
        encoder.detach(a)
        encoder.detach(a)  # idempotent
        encoder.detach(b)
        await asyncio.sleep(0.3)
        assert encoder.subscribers == 0 and not encoder.running
        count = len(b.got)
        await asyncio.sleep(0.3)
        assert len(b.got) == count


async def test_a_sink_that_raises_is_detached_and_the_others_go_on() -> None:
    async with SyntheticVideoEncoder(160, 90, FPS, keyframe_interval=None, min_keyframe_gap=0) as encoder:
        good, broken = _ListSink("video"), _BrokenSink("video")
        encoder.attach(broken)
        encoder.attach(good)
        await asyncio.sleep(1.0)
        assert len(broken.got) == 3 and isinstance(broken.error, RuntimeError)
        assert encoder.subscribers == 1 and encoder.running and encoder.error is None
        assert len(good.got) > 10
        encoder.detach(good)
