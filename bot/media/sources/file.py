"""File playback: any file PyAV can decode, paced in real time, optionally looping.

aiortc's ``MediaPlayer`` loses its pacing after the first loop and restarts timestamps, so this
module decodes with PyAV directly. Each track owns one reader thread (decoding releases the GIL,
so it stays off the event loop) that opens the file, decodes one stream, and stays a few frames
ahead of the consumer. Timestamps run on across loops, and both tracks of a file advance by the
same loop period, so audio and video stay in step however long the file loops.
"""

from __future__ import annotations

import asyncio
import fractions
import os
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, TypeVar

import av
import av.container
import av.error
import av.stream
import numpy as np
import structlog
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..errors import MediaSourceError
from .clock import Pacer
from .synthetic import VIDEO_CLOCK_RATE, VIDEO_TIME_BASE

log = structlog.get_logger(__name__)

AUDIO_RATE = 48000
AUDIO_SAMPLES = AUDIO_RATE * 20 // 1000  # 20 ms, what Opus in WebRTC expects
_AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)
_ATTACHED_PIC = av.stream.Disposition.attached_pic
_PROBE_PACKETS = 500  # how far to look for a first decodable frame of each stream

Kind = Literal["audio", "video"]
Frame = av.AudioFrame | av.VideoFrame
_Item = tuple[Frame, float]  # a frame and its media time in seconds
_END = object()
_F = TypeVar("_F", av.AudioFrame, av.VideoFrame)
_Frames = Generator[_Item, None, None]
_Produce = Callable[[threading.Event], _Frames]


@dataclass(frozen=True)
class _Probe:
    """What construction learned about the file; the reader threads start from this."""

    audio_index: int | None
    video_index: int | None
    duration: float | None  # container duration in seconds, the loop period when known


def _probe(path: str) -> _Probe:
    """Check the file up front so a bad path fails at start-up, not in a reader thread."""
    where = f"media file {path!r}"
    if not os.path.exists(path):
        raise MediaSourceError(f"{where} does not exist: check media.file in the config")
    if os.path.isdir(path):
        raise MediaSourceError(f"{where} is a directory, not a file: check media.file in the config")
    if not os.access(path, os.R_OK):
        raise MediaSourceError(f"{where} is not readable: check its permissions")
    try:
        with av.open(path) as container:
            audio = next(iter(container.streams.audio), None)
            # Cover art in a music file shows up as a one-frame video stream: not video.
            videos = [s for s in container.streams.video if not s.disposition & _ATTACHED_PIC]
            video = videos[0] if videos else None
            if audio is None and video is None:
                raise MediaSourceError(
                    f"{where} has no audio or video stream: use a file with audio, video or both"
                )
            wanted = [s for s in (audio, video) if s is not None]
            _check_decodable(where, container, wanted)
            duration = container.duration / av.time_base if container.duration else None
            return _Probe(
                audio_index=None if audio is None else audio.index,
                video_index=None if video is None else video.index,
                duration=duration if duration and duration > 0 else None,
            )
    except av.FFmpegError as exc:
        reason = exc.strerror or str(exc)
        raise MediaSourceError(
            f"{where} cannot be opened by PyAV: {reason}: use a file that FFmpeg can decode"
        ) from exc


def _check_decodable(
    where: str, container: av.container.InputContainer, streams: Sequence[av.stream.Stream]
) -> None:
    """Decode up to the first frame of each stream: a file can open yet not decode."""
    pending = {s.index for s in streams}
    for count, packet in enumerate(container.demux(streams)):
        if packet.stream.index in pending:
            try:
                if packet.decode():
                    pending.discard(packet.stream.index)
            except av.error.InvalidDataError:
                pass  # a damaged packet; the next ones may decode
        if not pending or count >= _PROBE_PACKETS:
            break
    for stream in streams:
        if stream.index in pending:
            raise MediaSourceError(
                f"{where} has a {stream.type} stream ({stream.codec_context.name}) with no "
                "decodable frame: re-encode the file, e.g. to VP8/Opus in WebM"
            )


def _decode(path: str, index: int, kind: type[_F]) -> Iterator[_F]:
    """Decode one pass of one stream; a corrupt packet is skipped, not fatal."""
    with av.open(path) as container:
        stream = container.streams[index]
        for packet in container.demux(stream):
            try:
                frames = packet.decode()  # the flush packet at the end drains the decoder
            except av.error.InvalidDataError:
                continue
            for frame in frames:
                if isinstance(frame, kind):
                    yield frame


def _video_frames(path: str, index: int, loop: bool, period: float | None, quit: threading.Event) -> _Frames:
    """Video frames at the file's own timing, re-stamped in 1/90000 across loops."""
    offset = 0.0  # where the current pass starts on the output timeline, in seconds
    while True:
        first: float | None = None
        last: float | None = None
        frame_dur = 1 / 25
        for frame in _decode(path, index, av.VideoFrame):
            if quit.is_set():
                return
            if frame.pts is not None and frame.time_base is not None:
                t = float(frame.pts * frame.time_base)
                first = t if first is None else first
                t -= first
            else:
                t = 0.0 if last is None else last + frame_dur
            if last is not None:
                if t <= last:
                    t = last + frame_dur  # repair non-increasing timestamps
                else:
                    frame_dur = t - last  # the file's rate, even if it varies
            last = t
            if frame.format.name != "yuv420p":
                frame = frame.reformat(format="yuv420p")
            out = offset + t
            frame.pts = round(out * VIDEO_CLOCK_RATE)
            frame.time_base = VIDEO_TIME_BASE
            yield frame, out
        if last is None:
            raise MediaSourceError(f"media file {path!r} has no decodable video frame: re-encode it")
        if not loop:
            return
        offset += max(period or 0.0, last + frame_dur)


def _audio_frames(path: str, index: int, loop: bool, period: float | None, quit: threading.Event) -> _Frames:
    """48 kHz s16 mono frames of 20 ms; each pass is padded with silence to the loop period."""
    pending = np.zeros(0, dtype=np.int16)
    sent = 0  # samples handed out so far
    pass_start = 0  # output sample where the current pass began

    def take(final: bool = False) -> _Frames:
        nonlocal pending, sent
        if final and len(pending) % AUDIO_SAMPLES:
            pad = AUDIO_SAMPLES - len(pending) % AUDIO_SAMPLES
            pending = np.concatenate([pending, np.zeros(pad, dtype=np.int16)])
        while len(pending) >= AUDIO_SAMPLES:
            chunk, pending = pending[:AUDIO_SAMPLES], pending[AUDIO_SAMPLES:]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = AUDIO_RATE
            frame.pts = sent
            frame.time_base = _AUDIO_TIME_BASE
            yield frame, sent / AUDIO_RATE
            sent += AUDIO_SAMPLES

    while True:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE)
        got = 0
        for frame in _decode(path, index, av.AudioFrame):
            if quit.is_set():
                return
            frame.pts = None  # the resampler needs no timestamps, and loops would confuse it
            for out in resampler.resample(frame):
                samples = out.to_ndarray().reshape(-1)
                got += len(samples)
                pending = np.concatenate([pending, samples])
            yield from take()
        for out in resampler.resample(None):
            samples = out.to_ndarray().reshape(-1)
            got += len(samples)
            pending = np.concatenate([pending, samples])
        if got == 0:
            raise MediaSourceError(f"media file {path!r} has no decodable audio frame: re-encode it")
        if not loop:
            yield from take(final=True)
            return
        end = pass_start + max(round((period or 0.0) * AUDIO_RATE), got)
        pending = np.concatenate([pending, np.zeros(end - pass_start - got, dtype=np.int16)])
        pass_start = end


class _Reader:
    """Runs a frame generator on its own thread, at most ``depth`` frames ahead of ``get()``."""

    def __init__(self, name: str, produce: _Produce, depth: int) -> None:
        self._name = name
        self._produce = produce
        self._quit = threading.Event()
        self._slots = threading.Semaphore(depth)
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    async def get(self) -> _Item | None:
        """The next frame; None at the end; raises what the thread raised."""
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # every later get() ends too
            return None
        if isinstance(item, BaseException):
            self._queue.put_nowait(_END)
            raise item
        self._slots.release()
        return item  # type: ignore[return-value]

    def stop(self) -> None:
        """Stop and join the thread; wake any pending ``get()``. Idempotent."""
        self._quit.set()
        self._slots.release()  # wake a thread waiting for room
        if self._thread is not None:
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                log.warning("media_reader_stuck", reader=self._name, waited_s=5)
            self._thread = None
        self._queue.put_nowait(_END)

    def _run(self) -> None:
        frames = self._produce(self._quit)
        try:
            for item in frames:
                if not self._wait_for_room() or not self._post(item):
                    return
            self._post(_END)
        except MediaSourceError as exc:
            self._post(exc)
        except Exception as exc:
            error = MediaSourceError(f"{self._name} failed while playing: {exc}")
            error.__cause__ = exc
            self._post(error)
        finally:
            frames.close()  # closes the container now, on this thread

    def _wait_for_room(self) -> bool:
        while not self._quit.is_set():
            if self._slots.acquire(timeout=0.1):
                return not self._quit.is_set()
            if self._loop is None or self._loop.is_closed():
                return False  # abandoned without stop(): do not linger
        return False

    def _post(self, item: object) -> bool:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the event loop is closed
            return False
        return True


class FileTrack(MediaStreamTrack):
    """One stream of a media file, decoded on a thread and paced in real time.

    When the file ends without looping, or decoding fails, the track ends (``recv()`` raises
    ``MediaStreamError``); a failure is logged and kept in ``error`` for the owner.
    """

    def __init__(self, kind: Kind, name: str, produce: _Produce, depth: int) -> None:
        super().__init__()
        self.kind = kind
        self.frames_sent = 0
        self.error: MediaSourceError | None = None
        self._reader = _Reader(name, produce, depth)
        self._started = False
        self._pacer = Pacer()

    async def recv(self) -> Frame:
        """The next frame, when it is due."""
        if self.readyState != "live":
            raise MediaStreamError
        if not self._started:
            self._started = True
            self._reader.start()
        try:
            item = await self._reader.get()
        except MediaSourceError as exc:
            self.error = exc
            log.error("media_file_failed", error=str(exc), exc_info=exc)
            self.stop()
            raise MediaStreamError(str(exc)) from exc
        if item is None:
            self.stop()
            raise MediaStreamError
        frame, media_time = item
        await self._pacer.wait(media_time)
        if self.readyState != "live":
            raise MediaStreamError
        self.frames_sent += 1
        return frame

    def stop(self) -> None:
        """End the track and join its reader thread."""
        super().stop()
        self._reader.stop()


class FileSource:
    """A media file checked at construction, handing out its audio and video as tracks.

    Construction is synchronous and raises :class:`MediaSourceError` for a missing, unreadable or
    undecodable file, so configuration mistakes surface before any room is joined. Each of
    :meth:`audio_track` and :meth:`video_track` returns the same track on every call.
    """

    def __init__(self, path: str, loop: bool = True) -> None:
        self.path = path
        self.loop = loop
        self._probe = _probe(path)
        self._tracks: dict[Kind, FileTrack] = {}

    @property
    def has_audio(self) -> bool:
        return self._probe.audio_index is not None

    @property
    def has_video(self) -> bool:
        return self._probe.video_index is not None

    @property
    def duration(self) -> float | None:
        """Seconds per pass as the container reports it (None if it does not say)."""
        return self._probe.duration

    def audio_track(self) -> FileTrack | None:
        """The file's first audio stream as 48 kHz s16 mono 20 ms frames, or None."""
        index = self._probe.audio_index
        if index is None:
            return None
        return self._track("audio", index, _audio_frames, depth=10)

    def video_track(self) -> FileTrack | None:
        """The file's first video stream as yuv420p frames at the file's rate, or None."""
        index = self._probe.video_index
        if index is None:
            return None
        return self._track("video", index, _video_frames, depth=4)

    def _track(
        self,
        kind: Kind,
        index: int,
        frames: Callable[[str, int, bool, float | None, threading.Event], _Frames],
        depth: int,
    ) -> FileTrack:
        if kind not in self._tracks:
            path, loop, period = self.path, self.loop, self._probe.duration

            def produce(quit: threading.Event) -> _Frames:
                return frames(path, index, loop, period, quit)

            name = f"media file {os.path.basename(path)!r} {kind}"
            self._tracks[kind] = FileTrack(kind, name, produce, depth)
        return self._tracks[kind]

    def close(self) -> None:
        """Stop every track handed out, joining their threads. Idempotent."""
        for track in self._tracks.values():
            track.stop()

    async def aclose(self) -> None:
        self.close()

    def __enter__(self) -> FileSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> FileSource:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
