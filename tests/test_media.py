"""bot.media: real frames, real-time pacing, a counter that survives VP8, looping file playback."""

from __future__ import annotations

import asyncio
import fractions
import logging
import os
import threading
import time
from pathlib import Path
from typing import TypeVar

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from structlog.testing import capture_logs

from bot.media import (
    FileSource,
    MediaSourceError,
    MediaSpec,
    SyntheticVideoTrack,
    ToneAudioTrack,
    open_media,
    read_frame_counter,
)

FILE_FPS = 15
FILE_FRAMES = 15  # one second per pass


def write_test_file(path: Path, *, video: bool = True, audio: bool = True) -> Path:
    """One second of VP8 320x180 (frame i shows counter i) and/or an Opus 440 Hz tone."""
    fmt = "webm" if video else "ogg"
    with av.open(str(path), "w", format=fmt) as container:
        # Both streams must exist before the first packet is muxed.
        vs = container.add_stream("libvpx", rate=FILE_FPS) if video else None
        aus = container.add_stream("libopus", rate=48000) if audio else None
        if vs is not None:
            vs.width, vs.height, vs.pix_fmt = 320, 180, "yuv420p"
            vs.bit_rate = 300_000
        if aus is not None:
            aus.layout = "mono"
        if vs is not None:
            source = SyntheticVideoTrack(320, 180, FILE_FPS)
            for i in range(FILE_FRAMES):
                frame = source.make_frame(i)
                frame.pts, frame.time_base = i, fractions.Fraction(1, FILE_FPS)
                container.mux(vs.encode(frame))
            container.mux(vs.encode(None))
        if aus is not None:
            t = np.arange(48000) / 48000
            pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
            for k in range(0, len(pcm), 960):
                chunk = av.AudioFrame.from_ndarray(
                    pcm[k : k + 960].reshape(1, -1), format="s16", layout="mono"
                )
                chunk.sample_rate, chunk.pts = 48000, k
                chunk.time_base = fractions.Fraction(1, 48000)
                container.mux(aus.encode(chunk))
            container.mux(aus.encode(None))
    return path


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("media")
    write_test_file(d / "av.webm")
    write_test_file(d / "audio.ogg", video=False)
    return d


F = TypeVar("F", av.AudioFrame, av.VideoFrame)


async def collect(track: MediaStreamTrack, seconds: float, kind: type[F]) -> list[tuple[float, F]]:
    """Frames received for ``seconds``, each with its arrival time."""
    out: list[tuple[float, F]] = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        frame = await track.recv()
        assert isinstance(frame, kind)
        out.append((time.monotonic() - t0, frame))
    return out


def vp8_roundtrip(frames: list[av.VideoFrame], bit_rate: int) -> list[av.VideoFrame]:
    """Encode with libvpx the way a WebRTC sender would, and decode with FFmpeg's vp8."""
    first = frames[0]
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = first.width, first.height, "yuv420p"
    enc.time_base = fractions.Fraction(1, 90000)
    enc.framerate = fractions.Fraction(15)
    enc.bit_rate = bit_rate
    enc.options = {"deadline": "realtime", "lag-in-frames": "0", "cpu-used": "8"}
    dec = av.CodecContext.create("vp8", "r")
    decoded: list[av.VideoFrame] = []
    for frame in [*frames, None]:
        for packet in enc.encode(frame):
            decoded.extend(dec.decode(packet))
    return decoded


# --- synthetic video ---------------------------------------------------------------------------


def test_video_frames_are_real_and_numbered() -> None:
    track = SyntheticVideoTrack(640, 360, 15)
    frames = [track.make_frame(i) for i in (0, 1, 2, 7, 123456, 10**6 + 42)]
    assert all(f.format.name == "yuv420p" and (f.width, f.height) == (640, 360) for f in frames)
    assert [f.pts for f in frames[:3]] == [0, 6000, 12000]
    assert frames[0].time_base == fractions.Fraction(1, 90000)
    assert [read_frame_counter(f) for f in frames] == [0, 1, 2, 7, 123456, 42]  # wraps at 10**6
    y = frames[4].to_ndarray()[:360]
    assert read_frame_counter(y) == 123456  # a bare luma plane works too
    # The pattern moves: consecutive frames differ outside the counter.
    a, b = (f.to_ndarray()[200:] for f in frames[:2])
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 1


def test_counter_absent_gives_none() -> None:
    assert read_frame_counter(np.full((360, 640), 128, np.uint8)) is None
    noise = np.random.default_rng(1).integers(0, 256, (360, 640), dtype=np.uint8)
    assert read_frame_counter(noise) is None
    assert read_frame_counter(np.zeros((20, 20), np.uint8)) is None  # too small to hold one


@pytest.mark.parametrize(("width", "height", "bit_rate"), [(640, 360, 250_000), (320, 180, 80_000)])
def test_counter_survives_vp8(width: int, height: int, bit_rate: int) -> None:
    track = SyntheticVideoTrack(width, height, 15, label="bot-1")
    sent = list(range(998, 1028))  # digits roll over in the middle
    decoded = vp8_roundtrip([track.make_frame(i) for i in sent], bit_rate)
    assert len(decoded) == len(sent)
    assert [read_frame_counter(f) for f in decoded] == sent


def test_video_size_and_rate_are_checked() -> None:
    for kwargs, needle in [
        ({"width": 641}, "641x360 is invalid"),
        ({"width": 64, "height": 40}, "too small"),
        ({"fps": 0}, "frame rate 0 is invalid"),
    ]:
        with pytest.raises(MediaSourceError, match=needle) as info:
            SyntheticVideoTrack(**kwargs)  # type: ignore[arg-type]
        assert "\n" not in str(info.value)


# --- pacing and the tone -----------------------------------------------------------------------


async def test_synthetic_tracks_are_paced_and_tone_is_clean() -> None:
    video = SyntheticVideoTrack(320, 180, 15)
    audio = ToneAudioTrack(440.0)
    vframes, aframes = await asyncio.gather(
        collect(video, 1.0, av.VideoFrame), collect(audio, 1.0, av.AudioFrame)
    )
    assert 14 <= len(vframes) <= 18
    assert video.frames_sent == len(vframes)
    assert [f.pts for _, f in vframes] == [round(i * 6000) for i in range(len(vframes))]
    assert [read_frame_counter(f) for _, f in vframes] == list(range(len(vframes)))

    assert 48 <= len(aframes) <= 53
    assert audio.frames_sent == len(aframes)
    for i, (_, f) in enumerate(aframes):
        assert (f.format.name, f.layout.name, f.samples) == ("s16", "mono", 960)
        assert (f.pts, f.sample_rate, f.time_base) == (i * 960, 48000, fractions.Fraction(1, 48000))
    pcm = np.concatenate([f.to_ndarray().reshape(-1) for _, f in aframes]).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    peak_hz = np.argmax(spectrum) * 48000 / len(pcm)
    assert abs(peak_hz - 440) < 2
    # Phase carries over frame boundaries: the whole run matches one continuous sine.
    ideal = np.sin(2 * np.pi * 440 * np.arange(len(pcm)) / 48000) * 0.2 * 32767
    assert np.abs(pcm - ideal).max() <= 1.5


async def test_silence_and_stop() -> None:
    audio = ToneAudioTrack(None)
    frame = await audio.recv()
    assert frame.samples == 960 and not frame.to_ndarray().any()
    pending = asyncio.ensure_future(audio.recv())  # sleeping until the next frame is due
    await asyncio.sleep(0)
    audio.stop()
    with pytest.raises(MediaStreamError):
        await pending
    with pytest.raises(MediaStreamError):
        await audio.recv()


def test_tone_parameters_are_checked() -> None:
    with pytest.raises(MediaSourceError, match="tone frequency 30000"):
        ToneAudioTrack(30000)
    with pytest.raises(MediaSourceError, match="whole number of samples"):
        ToneAudioTrack(440, sample_rate=44100, ptime_ms=7)


# --- file playback -----------------------------------------------------------------------------


async def test_file_loops_with_steady_rate_and_rising_timestamps(
    media_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    threads = threading.active_count()
    with capture_logs() as logs:
        await _loop_and_close(media_dir, threads)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [e for e in logs if e["log_level"] in ("warning", "error", "critical")]


async def _loop_and_close(media_dir: Path, threads: int) -> None:
    source = FileSource(str(media_dir / "av.webm"))
    assert source.has_audio and source.has_video
    audio, video = source.audio_track(), source.video_track()
    assert audio is not None and video is not None
    assert (audio.kind, video.kind) == ("audio", "video")
    assert source.video_track() is video  # one track per kind
    vframes, aframes = await asyncio.gather(
        collect(video, 2.5, av.VideoFrame), collect(audio, 2.5, av.AudioFrame)
    )

    # Video: the file's 15 fps holds across two loop boundaries, counters replay 0..14.
    assert 35 <= len(vframes) <= 41
    counters = [read_frame_counter(f) for _, f in vframes]
    assert counters == [i % FILE_FRAMES for i in range(len(vframes))]
    pts = np.array([f.pts for _, f in vframes])
    assert all(f.time_base == fractions.Fraction(1, 90000) for _, f in vframes)
    steps = np.diff(pts) / 90000
    assert steps.min() > 0.05 and steps.max() < 0.09  # one frame, a boundary adds <= 8 ms
    arrivals = np.array([t for t, _ in vframes])
    assert np.diff(arrivals).max() < 0.2  # no stall at a loop boundary...
    assert (arrivals - arrivals[0] >= pts / 90000 - 0.003).all()  # ...and never ahead of time

    # Audio: contiguous 20 ms frames of 48 kHz mono, 50 a second, through the loops.
    assert 120 <= len(aframes) <= 130
    assert [f.pts for _, f in aframes] == [i * 960 for i in range(len(aframes))]
    assert {(f.samples, f.sample_rate, f.format.name, f.layout.name) for _, f in aframes} == {
        (960, 48000, "s16", "mono")
    }

    source.close()
    source.close()  # idempotent
    assert threading.active_count() == threads
    assert video.readyState == "ended"
    with pytest.raises(MediaStreamError):
        await video.recv()


async def test_file_without_loop_ends(media_dir: Path) -> None:
    threads = threading.active_count()
    with FileSource(str(media_dir / "av.webm"), loop=False) as source:
        video = source.video_track()
        assert video is not None
        frames: list[av.VideoFrame] = []
        with pytest.raises(MediaStreamError):
            while True:
                frame = await video.recv()
                assert isinstance(frame, av.VideoFrame)
                frames.append(frame)
        assert [read_frame_counter(f) for f in frames] == list(range(FILE_FRAMES))
        assert video.readyState == "ended" and video.error is None
    assert threading.active_count() == threads


async def test_stopping_a_track_mid_recv_joins_its_thread(
    media_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    threads = threading.active_count()
    with capture_logs() as logs:
        source = FileSource(str(media_dir / "av.webm"))
        audio = source.audio_track()
        assert audio is not None
        await audio.recv()
        assert threading.active_count() == threads + 1
        pending = asyncio.ensure_future(audio.recv())
        await asyncio.sleep(0.005)
        audio.stop()
        with pytest.raises(MediaStreamError):
            await pending
    assert threading.active_count() == threads
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [e for e in logs if e["log_level"] in ("warning", "error", "critical")]


async def test_file_vanishing_mid_play_ends_track_with_error(tmp_path: Path) -> None:
    path = write_test_file(tmp_path / "gone.webm", audio=False)
    source = FileSource(str(path))
    video = source.video_track()
    assert video is not None
    path.unlink()
    with capture_logs() as logs, pytest.raises(MediaStreamError):
        await video.recv()
    error = video.error
    assert isinstance(error, MediaSourceError) and "gone.webm" in str(error)
    assert video.readyState == "ended"
    failed = [e for e in logs if e["event"] == "media_file_failed"]  # reported, not swallowed
    assert [e["log_level"] for e in failed] == ["error"] and "gone.webm" in failed[0]["error"]
    source.close()


def test_bad_files_give_one_line_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    subtitles = tmp_path / "subs.srt"
    subtitles.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    cases = [
        (tmp_path / "missing.mp4", "media file '.*missing.mp4' does not exist: check media.file"),
        (tmp_path, "is a directory, not a file"),
        (junk, "media file '.*junk.mp4' cannot be opened by PyAV: Invalid data"),
        (subtitles, "media file '.*subs.srt' has no audio or video stream"),
    ]
    for path, pattern in cases:
        with pytest.raises(MediaSourceError, match=pattern) as info:
            FileSource(str(path))
        assert "\n" not in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(media_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "locked.webm"
    path.write_bytes((media_dir / "av.webm").read_bytes())
    path.chmod(0)
    with pytest.raises(MediaSourceError, match="is not readable"):
        FileSource(str(path))


# --- config-level factory ----------------------------------------------------------------------


def test_open_media_synthetic() -> None:
    audio, video = open_media(MediaSpec(width=320, height=180), audio=True, video=True, label="x")
    assert isinstance(audio, ToneAudioTrack) and isinstance(video, SyntheticVideoTrack)
    assert (video.width, video.height, video.label) == (320, 180, "x")
    assert open_media(MediaSpec(), audio=False, video=True)[0] is None
    assert open_media(MediaSpec(), audio=True, video=False)[1] is None


def test_open_media_file(media_dir: Path) -> None:
    spec = MediaSpec(kind="file", file=str(media_dir / "audio.ogg"))
    audio, video = open_media(spec, audio=True, video=True)
    assert audio is not None and audio.kind == "audio" and video is None  # publishes what exists
    with pytest.raises(MediaSourceError, match="has no video stream, only audio"):
        open_media(spec, audio=False, video=True)
    both = MediaSpec(kind="file", file=str(media_dir / "av.webm"))
    audio, video = open_media(both, audio=False, video=True)
    assert audio is None and video is not None and video.kind == "video"
    with pytest.raises(MediaSourceError, match="does not exist"):
        open_media(MediaSpec(kind="file", file="nope.mp4"), audio=True, video=True)


def test_media_spec_is_checked() -> None:
    with pytest.raises(MediaSourceError, match=r"media\.file is not set"):
        MediaSpec(kind="file")
    with pytest.raises(MediaSourceError, match="unknown"):
        MediaSpec(kind="camera")  # type: ignore[arg-type]


def test_the_old_error_name_is_the_new_one() -> None:
    """``MediaError`` stays importable for one release, as the same class."""
    import bot.media

    assert bot.media.MediaError is MediaSourceError and "MediaError" in bot.media.__all__
    assert "MediaSourceError" in bot.media.__all__
