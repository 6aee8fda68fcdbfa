"""bot.media sinks: count, record (encoded frames into files, no decoding) and decode received media.

Input is real encoded media (libvpx, libx264, libopus through PyAV) of the synthetic pattern,
fed with RTP-style timestamps faster than real time: the sinks go by timestamps, not by waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection

from bot.media import (
    DiscardSink,
    EncodedSink,
    FrameSink,
    Kind,
    MediaSourceError,
    RecordSink,
    SyntheticVideoTrack,
    ToneAudioTrack,
    is_keyframe,
    make_sink,
    read_frame_counter,
)
from bot.media.bitstream import h264_frame, h264_sps_size, opus_samples, vp8_keyframe_size
from bot.media.sinks.mux import ContainerFile, Timeline, recording_name, safe_name

REPO = Path(__file__).resolve().parents[1]
FPS = 15
VIDEO_STEP = 90000 // FPS  # RTP ticks per video frame
AUDIO_STEP = 960  # 20 ms at 48 kHz
WRAP = 1 << 32

# --- real encoded input ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Media:
    video: list[tuple[bytes, bool]]  # (frame, keyframe), one per video frame at FPS
    audio: list[bytes]  # 20 ms Opus packets
    codec: str
    width: int = 640
    height: int = 360


def encode_video(codec: str, seconds: float, width: int = 640, height: int = 360) -> list[tuple[bytes, bool]]:
    source = SyntheticVideoTrack(width, height, FPS)
    if codec == "VP8":
        enc = av.CodecContext.create("libvpx", "w")
        # Fixed speed (a negative cpu-used adapts to the time left and gets slow faster than real time).
        enc.options = {"deadline": "realtime", "cpu-used": "16", "lag-in-frames": "0", "static-thresh": "1"}
        enc.bit_rate = 500_000
        enc.thread_count = 1
    else:
        enc = av.CodecContext.create("libx264", "w")
        enc.options = {"preset": "ultrafast", "tune": "zerolatency"}
    assert isinstance(enc, av.VideoCodecContext)
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base = fractions.Fraction(1, 90000)
    enc.framerate = fractions.Fraction(FPS)
    enc.gop_size = FPS  # a keyframe every second
    out = [
        (bytes(p), bool(p.is_keyframe))
        for i in range(round(seconds * FPS))
        for p in enc.encode(source.make_frame(i))
    ]
    assert len(out) == round(seconds * FPS)
    return out


def encode_audio(seconds: float) -> list[bytes]:
    tone = ToneAudioTrack(frequency=440.0)
    enc = av.CodecContext.create("libopus", "w")
    assert isinstance(enc, av.AudioCodecContext)
    enc.sample_rate, enc.format, enc.layout = 48000, "s16", "mono"
    enc.bit_rate = 32000
    enc.time_base = fractions.Fraction(1, 48000)
    packets = [bytes(p) for j in range(round(seconds * 50) + 1) for p in enc.encode(tone._render(j))]
    return packets[: round(seconds * 50)]


@pytest.fixture(scope="module")
def vp8() -> Media:
    return Media(encode_video("VP8", 10.0), encode_audio(10.0), "VP8")


@pytest.fixture(scope="module")
def h264() -> Media:
    return Media(encode_video("H264", 5.0), encode_audio(5.0), "H264")


class FakeClock:
    """Arrival time that follows the media being fed, as if it came in real time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def events(media: Media, seconds: float) -> Iterator[tuple[float, str, int]]:
    """(media time, kind, index) in arrival order: video and audio interleaved by time."""
    video = ((i / FPS, "video", i) for i in range(min(len(media.video), round(seconds * FPS))))
    audio = ((j * 0.02, "audio", j) for j in range(min(len(media.audio), round(seconds * 50))))
    return iter(sorted(itertools.chain(video, audio)))


def feed(
    sink: EncodedSink,
    media: Media,
    seconds: float,
    *,
    clock: FakeClock | None = None,
    video_ts0: int = 0,
    audio_ts0: int = 0,
    after: Callable[[float], None] | None = None,
) -> None:
    """Write ``seconds`` of ``media`` into ``sink`` with RTP timestamps from the given origins."""
    start = clock.now if clock else 0.0
    for t, kind, i in events(media, seconds):
        if clock:
            clock.now = start + t
        if kind == "video":
            data, key = media.video[i]
            sink.write("video", media.codec, data, (video_ts0 + i * VIDEO_STEP) % WRAP, 90000, key)
        else:
            sink.write("audio", "opus", media.audio[i], (audio_ts0 + i * AUDIO_STEP) % WRAP, 48000, True)
        if after:
            after(t)


@dataclass
class Probe:
    """What PyAV reads back from a recording."""

    codecs: dict[str, str]
    duration: float | None  # container duration, None if the file was never finalized
    video_frames: int
    counters: list[int | None]
    first_video_keyframe: bool
    audio_seconds: float
    size: tuple[int, int] | None


def probe(path: Path) -> Probe:
    with av.open(str(path)) as container:
        codecs: dict[str, str] = {s.type: s.codec_context.name for s in container.streams}
        duration = None if container.duration is None else container.duration / 1e6
        size = None
        first_key = False
        if container.streams.video:
            vs = container.streams.video[0]
            size = (vs.codec_context.width, vs.codec_context.height)
            first = next(p for p in container.demux(vs) if p.size)
            first_key = bool(first.is_keyframe)
    counters: list[int | None] = []
    audio = 0
    with av.open(str(path)) as container:
        if container.streams.video:
            for packet in container.demux(video=0):
                with contextlib.suppress(av.FFmpegError):  # a damaged frame: go on with the next
                    counters.extend(read_frame_counter(f) for f in packet.decode())
    with av.open(str(path)) as container:
        if container.streams.audio:
            audio = sum(f.samples for f in container.decode(audio=0))
    return Probe(codecs, duration, len(counters), counters, first_key, audio / 48000, size)


def assert_counting_up(counters: list[int | None], start: int = 0) -> None:
    read = [c for c in counters if c is not None]
    assert len(read) >= 0.9 * len(counters), counters
    assert read[0] == start, read[:5]
    assert all(b > a for a, b in itertools.pairwise(read)), read


# --- record ----------------------------------------------------------------------------------------


def test_records_vp8_and_opus_into_webm_without_reencoding(tmp_path: Path, vp8: Media) -> None:
    clock = FakeClock()
    started = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    sink = RecordSink(tmp_path, "Zoë Smith/../x", started, clock=clock)
    # Both RTP clocks wrap at 2**32 in the middle of the recording (video at 5 s, audio at 4 s).
    feed(sink, vp8, 10.0, clock=clock, video_ts0=WRAP - 75 * VIDEO_STEP, audio_ts0=WRAP - 200 * AUDIO_STEP)
    sink.close()
    sink.close()  # idempotent

    assert [p.name for p in sink.files] == ["Zoe_Smith_.._x-20240506T070809Z.webm"]
    assert sink.error is None
    stats = sink.stats()
    assert stats["video"] == {
        "frames": 150,
        "bytes": stats["video"]["bytes"],
        "keyframes": 10,
        "dropped": 0,
        "written": 150,
    }
    assert stats["audio"]["written"] == 500 and stats["audio"]["dropped"] == 0

    got = probe(sink.files[0])
    assert got.codecs == {"video": "vp8", "audio": "opus"}
    assert got.duration is not None and abs(got.duration - 10.0) <= 1.0
    assert abs(got.video_frames - 150) <= 150 * 0.05
    assert got.size == (640, 360)
    assert got.first_video_keyframe
    assert_counting_up(got.counters)
    assert abs(got.audio_seconds - 10.0) < 0.1

    # No re-encoding: the file holds the very bytes that were written.
    with av.open(str(sink.files[0])) as container:
        stored = [bytes(p) for p in container.demux(video=0) if p.size]
    assert stored == [data for data, _ in vp8.video]


def test_audio_and_video_are_aligned_by_first_arrival(tmp_path: Path, vp8: Media) -> None:
    clock = FakeClock()
    sink = RecordSink(tmp_path, "late-video", clock=clock)
    # Audio starts 0.5 s before video; the RTP clocks have unrelated random origins.
    for j in range(25):
        clock.now = 1000 + j * 0.02
        sink.write("audio", "opus", vp8.audio[j], 123456 + j * AUDIO_STEP, 48000, True)
    clock.now = 1000.5
    feed(sink, vp8, 3.0, clock=clock, video_ts0=987654321, audio_ts0=123456 + 25 * AUDIO_STEP)
    sink.close()
    with av.open(str(sink.files[0])) as container:
        firsts = {}
        for packet in container.demux():
            if packet.pts is not None and packet.stream.type not in firsts:
                firsts[packet.stream.type] = float(packet.pts * packet.time_base)
    assert firsts["audio"] == pytest.approx(0.0, abs=0.002)
    assert firsts["video"] == pytest.approx(0.5, abs=0.002)


def test_file_grows_on_disk_while_recording(tmp_path: Path, vp8: Media) -> None:
    sink = RecordSink(tmp_path, "grower")  # real arrival clock: fed much faster than real time
    sizes: dict[float, int] = {}

    def check(t: float) -> None:
        if t in (2.0, 4.0, 6.0) and sink.files:
            sizes[t] = sink.files[0].stat().st_size

    feed(sink, vp8, 6.5, after=check)
    assert 0 < sizes[2.0] < sizes[4.0] < sizes[6.0], sizes
    sink.close()
    assert sink.files[0].stat().st_size > sizes[6.0]


_CHILD = """
import asyncio, fractions, json, signal, sys, time
import av
from bot.media import RecordSink, SyntheticVideoTrack, ToneAudioTrack

out = sys.argv[1]

async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    sink = RecordSink(out, "child")
    video = SyntheticVideoTrack(640, 360, 15)
    tone = ToneAudioTrack()
    venc = av.CodecContext.create("libvpx", "w")
    venc.width, venc.height, venc.pix_fmt = 640, 360, "yuv420p"
    venc.time_base = fractions.Fraction(1, 90000)
    venc.framerate, venc.gop_size, venc.bit_rate = 15, 15, 500000
    venc.options = {"deadline": "realtime", "cpu-used": "16", "lag-in-frames": "0"}
    venc.thread_count = 1
    aenc = av.CodecContext.create("libopus", "w")
    aenc.sample_rate, aenc.format, aenc.layout = 48000, "s16", "mono"
    aenc.time_base = fractions.Fraction(1, 48000)
    start = time.monotonic()
    i = j = 0
    while not stop.is_set():
        while j * 0.02 <= i / 15:
            for p in aenc.encode(tone._render(j)):
                sink.write("audio", "opus", bytes(p), j * 960, 48000, True)
            j += 1
        for p in venc.encode(video.make_frame(i)):
            sink.write("video", "VP8", bytes(p), 1000 + i * 6000, 90000, p.is_keyframe)
        i += 1
        await asyncio.sleep(max(0.0, start + i / 30 - time.monotonic()))  # twice real time
    sink.close()
    with open(out + "/done.json", "w") as f:
        json.dump({"video": i, "files": [str(p) for p in sink.files]}, f)

asyncio.run(main())
"""


def test_recording_survives_sigkill_and_is_finalized_on_sigterm(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(_CHILD))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    dirs = {sig: tmp_path / sig.name for sig in (signal.SIGKILL, signal.SIGTERM)}
    children = {
        sig: subprocess.Popen([sys.executable, str(script), str(d)], env=env, stderr=subprocess.PIPE)
        for sig, d in dirs.items()
    }
    try:
        deadline = time.monotonic() + 20
        # Let each record a few seconds of media (about 150 kB), then signal it.
        for sig, child in children.items():
            while time.monotonic() < deadline:
                files = list(dirs[sig].glob("*.webm"))
                if files and files[0].stat().st_size > 150_000:
                    break
                assert child.poll() is None, child.stderr.read() if child.stderr else ""
                time.sleep(0.05)
            child.send_signal(sig)
        for child in children.values():
            child.wait(timeout=15)
    finally:
        for child in children.values():
            if child.poll() is None:
                child.kill()
    assert children[signal.SIGKILL].returncode == -signal.SIGKILL
    assert children[signal.SIGTERM].returncode == 0, children[signal.SIGTERM].stderr

    # Killed without close(): no duration or index, but every finished cluster plays.
    (killed,) = dirs[signal.SIGKILL].glob("*.webm")
    got = probe(killed)
    assert got.codecs == {"video": "vp8", "audio": "opus"}
    assert got.video_frames >= 15, got
    assert_counting_up(got.counters)
    assert got.audio_seconds > 1.0

    # Closed by the SIGTERM handler: complete, with its duration.
    done = json.loads((dirs[signal.SIGTERM] / "done.json").read_text())
    got = probe(Path(done["files"][0]))
    assert got.video_frames == done["video"]
    assert got.duration is not None and got.duration == pytest.approx(done["video"] / FPS, abs=0.2)
    assert_counting_up(got.counters)


@pytest.mark.parametrize(("h264_format", "ext"), [("mp4", ".mp4"), ("mpegts", ".ts")])
def test_records_h264(tmp_path: Path, h264: Media, h264_format: str, ext: str) -> None:
    clock = FakeClock()
    sink = RecordSink(tmp_path, "hana", h264_format=h264_format, clock=clock)  # type: ignore[arg-type]
    feed(sink, h264, 5.0, clock=clock, video_ts0=WRAP - 30 * VIDEO_STEP)
    sink.close()
    (path,) = sink.files
    assert path.suffix == ext
    got = probe(path)
    assert got.codecs == {"video": "h264", "audio": "opus"}
    assert got.video_frames == 75
    assert got.size == (640, 360)
    assert got.duration is not None and abs(got.duration - 5.0) <= 0.5
    assert_counting_up(got.counters)
    assert abs(got.audio_seconds - 5.0) < 0.1


def test_h264_keyframes_without_parameter_sets_get_them(tmp_path: Path, h264: Media) -> None:
    """A sender that sends SPS/PPS once: each file still starts with them (here: a rotation)."""
    clock = FakeClock()
    sink = RecordSink(tmp_path, "sps-once", rotate_s=2.0, kinds=("video",), clock=clock)
    for i, (data, key) in enumerate(h264.video):
        clock.now = 1000 + i / FPS
        if i > 0 and key:
            h = h264_frame(data)
            assert h.sps and h.pps
            data = data.replace(b"\x00\x00\x00\x01" + h.sps, b"").replace(b"\x00\x00\x00\x01" + h.pps, b"")
            assert not h264_frame(data).sps and h264_frame(data).idr
        sink.write("video", "H264", data, i * VIDEO_STEP, 90000, key)
    sink.close()
    assert len(sink.files) == 3
    for path in sink.files:
        got = probe(path)
        assert got.first_video_keyframe and got.size == (640, 360)
        assert got.video_frames > 0 and None not in got.counters


def test_rotation_starts_each_file_on_a_keyframe(tmp_path: Path, vp8: Media) -> None:
    clock = FakeClock()
    started = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    sink = RecordSink(tmp_path, "rot", started, rotate_s=2.0, clock=clock)
    feed(sink, vp8, 5.0, clock=clock, audio_ts0=WRAP - 60 * AUDIO_STEP)
    sink.close()
    assert [p.name for p in sink.files] == [
        "rot-20240101T120000Z.webm",
        "rot-20240101T120002Z.webm",
        "rot-20240101T120004Z.webm",
    ]
    probes = [probe(p) for p in sink.files]
    assert [p.video_frames for p in probes] == [30, 30, 15]
    assert all(p.first_video_keyframe for p in probes)
    # Nothing lost or doubled at the cuts: the counters carry on from file to file.
    starts = [0, 30, 60]
    for p, start in zip(probes, starts, strict=True):
        assert_counting_up(p.counters, start)
    assert sum(p.audio_seconds for p in probes) == pytest.approx(5.0, abs=0.001)
    assert [round(p.duration or 0, 1) for p in probes] == [2.0, 2.0, 1.0]


def test_audio_only_rotation_cuts_at_any_frame(tmp_path: Path, vp8: Media) -> None:
    clock = FakeClock()
    sink = RecordSink(tmp_path, "voice", rotate_s=1.0, kinds=("audio",), clock=clock)
    for j in range(150):
        clock.now = 1000 + j * 0.02
        sink.write("audio", "OPUS", vp8.audio[j], j * AUDIO_STEP, 48000, True)
    sink.close()
    assert len(sink.files) == 3
    assert [probe(p).audio_seconds for p in sink.files] == pytest.approx([1.0, 1.0, 1.0], abs=0.001)


def test_video_arriving_after_an_audio_only_start_opens_a_new_file(tmp_path: Path, vp8: Media) -> None:
    clock = FakeClock()
    sink = RecordSink(tmp_path, "camera-late", start_wait_s=1.0, clock=clock)
    for j in range(150):  # 3 s of audio alone: after 1 s the recording starts without video
        clock.now = 1000 + j * 0.02
        sink.write("audio", "opus", vp8.audio[j], j * AUDIO_STEP, 48000, True)
    feed(sink, vp8, 2.0, clock=clock, audio_ts0=150 * AUDIO_STEP)
    sink.close()
    first, second = (probe(p) for p in sink.files)
    assert first.codecs == {"audio": "opus"} and second.codecs == {"video": "vp8", "audio": "opus"}
    assert second.video_frames == 30 and second.first_video_keyframe
    assert first.audio_seconds + second.audio_seconds == pytest.approx(5.0, abs=0.001)


def test_restarted_sender_does_not_leave_a_gap_of_hours(tmp_path: Path, vp8: Media) -> None:
    clock = FakeClock()
    sink = RecordSink(tmp_path, "restart", kinds=("video",), clock=clock)
    for i, (data, key) in enumerate(vp8.video[:60]):
        clock.now = 1000 + i / FPS
        origin = 5000 if i < 30 else 1_500_000_000  # a new random origin at frame 30 (a keyframe)
        sink.write("video", "VP8", data, origin + i * VIDEO_STEP, 90000, key)
    sink.write("audio", "opus", vp8.audio[0], 0, 48000, True)  # not a kind asked for
    sink.close()
    assert sink.stats()["audio"]["dropped"] == 1
    got = probe(sink.files[0])
    assert got.codecs == {"video": "vp8"}
    assert got.video_frames == 60
    assert got.duration is not None and got.duration == pytest.approx(4.0, abs=0.2)


def test_garbage_is_dropped_and_counted(tmp_path: Path, vp8: Media) -> None:
    clock = FakeClock()
    sink = RecordSink(tmp_path, "garbage", kinds=("video",), clock=clock)
    inter = vp8.video[1][0]
    key = vp8.video[0][0]
    junk = [
        inter,  # not a keyframe: cannot start a file
        key[:6],  # a keyframe cut inside its header
        b"",  # nothing
        bytes(np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8)) + b"\x00",
        b"\x00\x01\x02",  # even byte 0: claims to be a keyframe
    ]
    for n, data in enumerate(junk):
        sink.write("video", "VP8", data, n * VIDEO_STEP, 90000, True)
    sink.write("video", "AV1", key, 10 * VIDEO_STEP, 90000, True)  # not recordable
    sink.write("audio", "PCMU", b"\xff" * 160, 0, 8000, True)
    for i, (data, k) in enumerate(vp8.video[:30]):
        clock.now = 1000 + i / FPS
        ts = (20 + i) * VIDEO_STEP
        sink.write("video", "VP8", data if i != 7 else data[: len(data) // 2], ts, 90000, k)  # one cut frame
    sink.write("video", "VP8", inter, (20 + 29) * VIDEO_STEP, 90000, False)  # repeated timestamp
    sink.write("video", "VP8", inter, (20 + 25) * VIDEO_STEP, 90000, False)  # late
    sink.close()
    stats = sink.stats()
    assert stats["video"]["dropped"] == len(junk) + 1 + 2
    assert stats["video"]["written"] == 30
    assert stats["audio"]["dropped"] == 1
    assert sink.error is None
    got = probe(sink.files[0])
    assert got.first_video_keyframe and got.video_frames >= 29


def test_record_sink_checks_its_arguments(tmp_path: Path) -> None:
    with pytest.raises(MediaSourceError, match="rotation"):
        RecordSink(tmp_path, "x", rotate_s=0)
    with pytest.raises(MediaSourceError, match=r"H\.264"):
        RecordSink(tmp_path, "x", h264_format="avi")  # type: ignore[arg-type]
    (tmp_path / "file").write_text("")
    with pytest.raises(MediaSourceError, match="directory"):
        RecordSink(tmp_path / "file" / "sub", "x")


def test_a_failing_disk_stops_the_recording_quietly(
    tmp_path: Path, vp8: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    sink = RecordSink(tmp_path, "full-disk", clock=clock)
    feed(sink, vp8, 1.0, clock=clock)
    real_write = ContainerFile.write

    def write(self: ContainerFile, *args: object, **kwargs: object) -> bool:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ContainerFile, "write", write)
    # No exception out of write(); the timestamps carry on.
    feed(sink, vp8, 1.0, clock=clock, video_ts0=15 * VIDEO_STEP, audio_ts0=50 * AUDIO_STEP)
    monkeypatch.setattr(ContainerFile, "write", real_write)
    sink.close()
    assert sink.error is not None and "No space left" in str(sink.error)
    stats = sink.stats()
    assert stats["video"]["written"] == 15 and stats["video"]["dropped"] == 15
    assert stats["audio"]["dropped"] == 50
    got = probe(sink.files[0])  # what was written before the failure is there, finalized
    assert got.video_frames == 15 and got.duration is not None


class _ReceiverTap(queue.Queue[Any]):
    """An ``RTCRtpReceiver`` decoder queue that hands encoded frames to a sink instead (as the
    SDK's receive side does): nothing is decoded."""

    def __init__(self, sink: EncodedSink, kind: Kind, enough: int, done: asyncio.Event) -> None:
        super().__init__()
        self.sink, self.kind = sink, kind
        self.frames, self.enough, self.done = 0, enough, done

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:  # the receiver stopping
            super().put(item, block, timeout)
            return
        codec, frame = item
        keyframe = is_keyframe(codec.name, frame.data)
        self.sink.write(self.kind, codec.name, frame.data, frame.timestamp, codec.clockRate, keyframe)
        self.frames += 1
        if self.frames >= self.enough:
            self.done.set()  # put() runs on the event loop (RTCRtpReceiver._handle_rtp_packet)


async def test_records_what_an_aiortc_receiver_reassembles(tmp_path: Path) -> None:
    sender, receiver = RTCPeerConnection(), RTCPeerConnection()
    sink = RecordSink(tmp_path, "remote")
    try:
        sender.addTransceiver(SyntheticVideoTrack(640, 360, FPS), "sendonly")
        sender.addTransceiver(ToneAudioTrack(), "sendonly")
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        done = asyncio.Event()
        for transceiver in receiver.getTransceivers():  # before the receivers start
            video = transceiver.kind == "video"
            tap = _ReceiverTap(sink, transceiver.kind, 2 * FPS if video else 10**9, done)  # type: ignore[arg-type]
            setattr(transceiver.receiver, "_RTCRtpReceiver__decoder_queue", tap)  # noqa: B010
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        await asyncio.wait_for(done.wait(), 15)
    finally:
        await sender.close()
        await receiver.close()
        sink.close()
    (path,) = sink.files
    got = probe(path)
    assert got.codecs == {"video": "vp8", "audio": "opus"} and got.size == (640, 360)
    assert got.video_frames >= 2 * FPS and got.first_video_keyframe
    assert_counting_up(got.counters)
    assert got.audio_seconds > 1.5


# --- discard and frames ----------------------------------------------------------------------------


def test_discard_sink_counts_and_keeps_nothing(tmp_path: Path, vp8: Media) -> None:
    sink = make_sink("discard")
    assert isinstance(sink, DiscardSink) and isinstance(sink, EncodedSink)
    feed(sink, vp8, 2.0)
    sink.close()
    sink.write("video", "VP8", b"x", 0, 90000, False)
    assert sink.stats() == {
        "audio": {"frames": 100, "bytes": sum(map(len, vp8.audio[:100])), "keyframes": 100, "dropped": 0},
        "video": {
            "frames": 31,
            "bytes": sum(len(d) for d, _ in vp8.video[:30]) + 1,
            "keyframes": 2,
            "dropped": 1,
        },
    }
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("threaded", [True, False])
def test_frame_sink_decodes_vp8_and_opus(vp8: Media, threaded: bool) -> None:
    frames: list[av.VideoFrame | av.AudioFrame] = []
    threads: set[str] = set()
    requests: list[int] = []

    def on_frame(frame: av.VideoFrame | av.AudioFrame) -> None:
        import threading

        threads.add(threading.current_thread().name)
        frames.append(frame)

    clock = FakeClock()
    sink = make_sink(
        "frames",
        on_frame=on_frame,
        threaded=threaded,
        queue_size=256,  # fed much faster than real time
        request_keyframe=lambda: requests.append(1),
        clock=clock,
    )
    assert isinstance(sink, FrameSink)
    sink.write("video", "VP8", vp8.video[1][0], 0, 90000, False)  # before any keyframe: dropped
    feed(sink, vp8, 2.0, clock=clock, video_ts0=VIDEO_STEP, audio_ts0=WRAP - 10 * AUDIO_STEP)
    sink.close()
    video = [f for f in frames if isinstance(f, av.VideoFrame)]
    audio = [f for f in frames if isinstance(f, av.AudioFrame)]
    assert len(video) == 30 and len(audio) == 100
    assert {(f.width, f.height) for f in video} == {(640, 360)}
    assert [read_frame_counter(f) for f in video] == list(range(30))
    assert {(f.sample_rate, f.samples) for f in audio} == {(48000, 960)}
    # Audio frames are stamped on the session clock, across the RTP wrap.
    assert [f.pts for f in audio[:12]] == [j * AUDIO_STEP for j in range(12)]
    assert requests == [1]
    stats = sink.stats()
    assert stats["video"]["decoded"] == 30 and stats["video"]["dropped"] == 1
    assert stats["audio"]["decoded"] == 100 and stats["audio"]["decode_errors"] == 0
    assert ("MainThread" not in threads) == threaded


def test_frame_sink_that_falls_behind_drops_and_restarts_video_at_a_keyframe(vp8: Media) -> None:
    decoded: list[int | None] = []

    def slow(frame: av.VideoFrame | av.AudioFrame) -> None:
        if isinstance(frame, av.VideoFrame):
            decoded.append(read_frame_counter(frame))
            time.sleep(0.005)

    sink = FrameSink(slow, queue_size=4)
    feed(sink, vp8, 3.0)
    sink.close()
    stats = sink.stats()
    assert stats["video"]["dropped"] + stats["audio"]["dropped"] > 0
    assert stats["video"]["decode_errors"] == 0  # never decodes a frame whose reference is gone
    assert decoded[0] == 0 and None not in decoded


def test_frame_sink_decodes_h264_and_survives_bad_frames_and_callbacks(h264: Media) -> None:
    seen: list[av.VideoFrame] = []

    def on_frame(frame: av.VideoFrame | av.AudioFrame) -> None:
        assert isinstance(frame, av.VideoFrame)
        seen.append(frame)
        if len(seen) == 3:
            raise RuntimeError("user bug")

    sink = FrameSink(on_frame)
    for i, (data, key) in enumerate(h264.video[:30]):
        sink.write("video", "h264", data, i * VIDEO_STEP, 90000, key)
    sink.write("video", "H264", b"\x00\x00\x00\x01\x65\xff\xff", 31 * VIDEO_STEP, 90000, True)  # broken IDR
    sink.close()
    stats = sink.stats()
    assert stats["video"]["callback_errors"] == 1
    assert len(seen) >= 30 and {(f.width, f.height) for f in seen} == {(640, 360)}
    assert [read_frame_counter(f) for f in seen[:30]] == list(range(30))


# --- pure parts ------------------------------------------------------------------------------------


def test_timeline_unwraps_refuses_late_frames_and_survives_restarts() -> None:
    t = Timeline(90000, origin_ns=500_000_000)
    assert t.place(WRAP - 3000, 0.0) == 500_000_000
    assert t.place(3000, 0.07) == 500_000_000 + 6000 * 1_000_000_000 // 90000  # across the wrap
    assert t.place(0, 0.08) is None  # late
    assert t.place(3000, 0.08) is None  # repeated
    before = t.position_ns()
    assert t.place(3000 + 90000 * 3600, 0.2) == before + 130_000_000  # leap of an hour: restart
    assert t.resets == 1
    assert t.place(3000 + 90000 * 3600 + 6000, 0.27) == before + 130_000_000 + 66_666_666


def test_bitstream_headers(h264: Media, vp8: Media) -> None:
    assert vp8_keyframe_size(vp8.video[0][0]) == (640, 360)
    assert vp8_keyframe_size(vp8.video[1][0]) is None
    assert is_keyframe("VP8", vp8.video[0][0]) and not is_keyframe("video/VP8", vp8.video[1][0])
    assert is_keyframe("H264", h264.video[0][0]) and not is_keyframe("h264", h264.video[1][0])
    for width, height in ((640, 360), (320, 240), (1280, 720), (176, 144)):
        (data, _), *_ = encode_video("H264", 1 / FPS, width, height)
        sps = h264_frame(data).sps
        assert sps is not None and h264_sps_size(sps) == (width, height)
    assert h264_sps_size(b"\x67\x42") is None
    assert opus_samples(vp8.audio[0]) == 960
    assert opus_samples(b"") is None and opus_samples(bytes([0b11111011])) is None
    assert opus_samples(bytes([0b00001001])) == 1920  # SILK 20 ms, two frames


def test_file_names_are_safe() -> None:
    when = datetime(2024, 2, 3, 4, 5, 6)  # naive: UTC
    assert recording_name("Ana María", when, "webm") == "Ana_Maria-20240203T040506Z.webm"
    assert recording_name("../../etc/passwd", when, "mp4") == "etc_passwd-20240203T040506Z.mp4"
    assert safe_name("") == safe_name("/") == safe_name("日本") == "participant"
    assert len(safe_name("x" * 500)) == 64
