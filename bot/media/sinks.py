"""Sinks for received media: what happens to the encoded frames a remote participant sends.

A receiving track that nobody looks at is never decoded. aiortc decodes every received frame on
a thread of its own unless the receiver is tapped before it starts (see ``bot/server/media.py``);
the tap hands each reassembled frame (``JitterFrame``: ``data``, RTP ``timestamp``) to a sink:

- :class:`DiscardSink` counts frames, bytes and keyframes per kind, and nothing else;
- :class:`RecordSink` muxes the encoded frames into files as they come, without decoding or
  re-encoding: VP8 (+ Opus) into WebM, H.264 (+ Opus) into fragmented MP4 (or MPEG-TS);
- :class:`FrameSink` decodes and hands ``av.VideoFrame`` / ``av.AudioFrame`` to a callback: the
  only sink that decodes.

Every sink implements :class:`EncodedSink`; :func:`make_sink` builds one by name. ``write`` may be
called from the event loop or from a receiver thread: sinks lock, and never raise from ``write``
(an exception there would break the receiver's RTP handling), they count and log instead.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol, Self, runtime_checkable

import av
import av.audio.frame
import av.video.frame

from .bitstream import codec_of, h264_frame, h264_sps_size, is_keyframe, vp8_keyframe_size
from .errors import MediaError
from .fanout import Kind, Packet
from .mux import (
    NS,
    ContainerFile,
    ContainerFormat,
    StreamFormat,
    Timeline,
    at_offset,
    container_format,
    file_pts,
    recording_name,
    reserve_path,
)

log = logging.getLogger(__name__)

KINDS: tuple[Kind, ...] = ("audio", "video")
SinkKind = Literal["discard", "record", "frames"]
Frame = av.video.frame.VideoFrame | av.audio.frame.AudioFrame

KEYFRAME_REQUEST_INTERVAL = 1.0
"""Ask the sender for a keyframe at most this often (seconds)."""


@runtime_checkable
class EncodedSink(Protocol):
    """Where a tapped receiver puts encoded frames. Implementations lock; ``write`` never raises."""

    def write(
        self, kind: Kind, codec: str, data: bytes, timestamp: int, clock_rate: int, keyframe: bool
    ) -> None:
        """Take one reassembled frame.

        ``codec`` is the RTP codec name (``VP8``, ``H264``, ``opus``; case-insensitive, a
        ``video/`` prefix is allowed); ``data`` the depacketized frame (VP8 frame, Annex-B
        H.264, one Opus packet); ``timestamp`` its RTP timestamp in ``clock_rate`` units (it may
        wrap at 2**32); ``keyframe`` the caller's view, which sinks that need certainty check
        against the bitstream (:func:`bot.media.bitstream.is_keyframe`).
        """
        ...

    def close(self) -> None:
        """Flush and release everything. Idempotent."""
        ...


@dataclass
class _Counts:
    frames: int = 0
    """Frames given to ``write``."""
    bytes: int = 0
    keyframes: int = 0
    dropped: int = 0
    """Frames not recorded or decoded: see the sink for why."""
    extra: dict[str, int] = field(default_factory=dict)


class _KeyframeRequests:
    """Calls the user's ``request_keyframe`` at most once per interval; a failing one is logged."""

    def __init__(self, callback: Callable[[], None] | None, interval: float = KEYFRAME_REQUEST_INTERVAL):
        self._callback = callback
        self._interval = interval
        self._last = -float("inf")
        self.sent = 0

    def __call__(self, now: float) -> None:
        if self._callback is None or now - self._last < self._interval:
            return
        self._last = now
        self.sent += 1
        try:
            self._callback()
        except Exception as exc:
            log.error("keyframe_request_failed: %s", exc, exc_info=exc)


class _Sink:
    """Counters per kind, one lock, idempotent close, ``with`` and ``async with``."""

    _extra_keys: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._lock = threading.RLock()  # a callback called under it may call stats()
        self._counts = {kind: _Counts(extra=dict.fromkeys(self._extra_keys, 0)) for kind in KINDS}
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> dict[str, dict[str, int]]:
        """Per kind: ``frames``, ``bytes``, ``keyframes``, ``dropped``, and the sink's own counters."""
        with self._lock:
            return {
                kind: {
                    "frames": c.frames,
                    "bytes": c.bytes,
                    "keyframes": c.keyframes,
                    "dropped": c.dropped,
                    **c.extra,
                }
                for kind, c in self._counts.items()
            }

    def close(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        """:meth:`close` on a worker thread, so a flush never stalls the event loop."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


# --------------------------------------------------------------------------- discard


class DiscardSink(_Sink):
    """Counts frames, bytes and keyframes (as the caller flags them) per kind; keeps nothing.

    It needs no frame (``needs_frames`` is False): a subscribe leg feeding it may count on the
    lean intake (:mod:`bot.media.intake`) and call :meth:`tally` instead of :meth:`write`, with
    each frame's RTP payload size (its bytes then include the VP8 payload descriptors, a few
    bytes per packet)."""

    needs_frames = False

    def tally(self, kind: Kind, size: int, keyframe: bool) -> None:
        """One frame that was counted, never reassembled."""
        counts = self._counts.get(kind)
        if counts is None:
            return
        with self._lock:
            counts.frames += 1
            counts.bytes += size
            counts.keyframes += keyframe
            if self._closed:
                counts.dropped += 1

    def write(
        self, kind: Kind, codec: str, data: bytes, timestamp: int, clock_rate: int, keyframe: bool
    ) -> None:
        self.tally(kind, len(data), keyframe)

    def close(self) -> None:
        self._closed = True


# --------------------------------------------------------------------------- record


@dataclass
class _Track:
    """What the recorder knows of one kind's incoming stream."""

    codec: str
    clock_rate: int
    timeline: Timeline
    last_arrival: float
    sps: bytes | None = None
    pps: bytes | None = None


@dataclass(frozen=True)
class _Frame:
    kind: Kind
    codec: str
    clock_rate: int
    data: bytes
    keyframe: bool
    pos_ns: int  # session position
    ticks: int  # Timeline.ticks and base_ns when placed
    base_ns: int
    arrival: float
    width: int = 0
    height: int = 0


def _annex_b(*units: bytes) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + unit for unit in units)


class RecordSink(_Sink):
    """Records one remote stream (its audio and video) into files, without decoding.

    **Files.** VP8 (+ Opus) and audio alone go into WebM; H.264 (+ Opus) into fragmented MP4
    (``h264_format="mp4"``: plays in browsers and players; a file cut short reads to its last
    one-second fragment) or MPEG-TS (``"mpegts"``: readable wherever it stops, but few players
    take Opus in TS). Files are named ``<participant>-<YYYYmmddTHHMMSSZ>.<ext>`` (``-2``... when
    taken) after their start in UTC: ``started`` is the wall-clock time of the first frame
    (default: when it arrives; naive means UTC), plus the file's offset from it. Files grow as
    frames come: nothing is held back for more than about a second, so a killed process leaves
    a readable file. :meth:`close` finalizes them (duration, index); :attr:`files` lists them.

    **Start.** ``kinds`` are recorded (frames of another kind are dropped). A file's streams are
    fixed when it is created, so the first file waits (buffering, at most ``start_wait_s`` of
    media or of wall time) until each of ``kinds`` has a frame, or starts with what came: pass
    ``kinds=("audio",)`` for a stream known to be audio-only, so it starts at once. Video
    starts at a keyframe: frames before it are dropped and ``request_keyframe`` is called (at
    most once a second, on the thread calling :meth:`write`; wire it to the receiver's PLI).

    **Timestamps.** Each kind's RTP timestamps are unwrapped and placed on one session clock
    (:class:`~bot.media.mux.Timeline`): audio and video are aligned by the arrival time of
    their first frames, then follow their own RTP clocks. A file's time 0 is its first frame.

    **New files.** Every ``rotate_s`` seconds of media (None: never), and when a kind or codec
    appears that the current file has no stream for (video coming after an audio-only start, a
    codec change), the recorder starts a new file at the next video keyframe (asking for one),
    or at the next audio frame if there is no live video. Audio that arrives just after the
    cut but belongs before it still goes to the old file, so nothing is lost or doubled. A
    sender that never sends a keyframe (no periodic ones, PLI ignored) is never cut.

    ``stats()`` adds ``written`` per kind; ``dropped`` counts other kinds, unsupported codecs,
    empty or unparseable frames, video before a keyframe, late or repeated timestamps, and
    everything after :attr:`error`. A file that fails (disk full...) stops the recording: the
    error is logged and kept in :attr:`error`; ``write`` keeps returning quietly.
    """

    _extra_keys = ("written",)

    def __init__(
        self,
        directory: str | os.PathLike[str],
        participant: str,
        started: datetime | None = None,
        rotate_s: float | None = None,
        *,
        kinds: tuple[Kind, ...] = KINDS,
        h264_format: ContainerFormat = "mp4",
        start_wait_s: float = 2.0,
        request_keyframe: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rotate_s is not None and not rotate_s > 0:
            raise MediaError(f"recording rotation {rotate_s} s is invalid: use a positive number or none")
        if h264_format not in ("mp4", "mpegts"):
            raise MediaError(f"H.264 recording format {h264_format!r} is unknown: use 'mp4' or 'mpegts'")
        if not kinds or not set(kinds) <= set(KINDS):
            raise MediaError(f"recorded kinds {kinds!r} are invalid: use 'audio' and/or 'video'")
        if not start_wait_s > 0:
            raise MediaError(f"recording start wait {start_wait_s} s is invalid: use a positive number")
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MediaError(f"cannot create recording directory {self.directory}: {exc}") from exc
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise MediaError(f"recording directory {self.directory} is not writable: fix its permissions")
        super().__init__()
        self.participant = participant
        self.rotate_s = rotate_s
        self.files: list[Path] = []
        """Every file started, in order."""
        self.error: MediaError | None = None
        """Why the recording stopped early, if it did."""
        self._started = started if started is None or started.tzinfo else started.replace(tzinfo=UTC)
        self._kinds = frozenset(kinds)
        self._h264_format = h264_format
        self._wait_s = start_wait_s
        self._wait_ns = int(start_wait_s * NS)
        self._rotate_ns = None if rotate_s is None else int(rotate_s * NS)
        self._clock = clock
        self._keyframes = _KeyframeRequests(request_keyframe)
        self._origin: float | None = None  # arrival of the first frame: session position 0
        self._tracks: dict[Kind, _Track] = {}
        self._pending: list[_Frame] = []  # frames for the next file
        self._file: ContainerFile | None = None
        self._switch_due = False
        self._previous: ContainerFile | None = None  # the file before the last cut, for late audio
        self._previous_cut_ns = 0
        self._previous_until = 0.0
        self._unsupported: set[str] = set()

    # -- input -----------------------------------------------------------------------------------

    def write(
        self, kind: Kind, codec: str, data: bytes, timestamp: int, clock_rate: int, keyframe: bool
    ) -> None:
        counts = self._counts.get(kind)
        if counts is None:
            return
        with self._lock:
            counts.frames += 1
            counts.bytes += len(data)
            if self._closed or self.error is not None:
                counts.dropped += 1
                return
            try:
                self._take(kind, codec, data, timestamp, clock_rate)
            except Exception as exc:
                counts.dropped += 1
                self._fail(exc)

    def _take(self, kind: Kind, codec: str, data: bytes, timestamp: int, clock_rate: int) -> None:
        if kind not in self._kinds:
            self._drop(kind)
            return
        name = codec_of(codec)
        if name not in ("vp8", "h264", "opus") or clock_rate <= 0 or (kind == "audio") != (name == "opus"):
            if codec not in self._unsupported:
                self._unsupported.add(codec)
                log.warning(
                    "recording_codec_unsupported: %s %s at %d Hz is not recorded", kind, codec, clock_rate
                )
            self._drop(kind)
            return
        if not data:
            self._drop(kind)
            return
        now = self._clock()
        if self._origin is None:
            self._origin = now
            if self._started is None:
                self._started = datetime.now(UTC)
        track = self._tracks.get(kind)
        if track is None or track.codec != name or track.clock_rate != clock_rate:
            origin_ns = int((now - self._origin) * NS)
            track = _Track(name, clock_rate, Timeline(clock_rate, origin_ns), now)
            self._tracks[kind] = track

        key = kind == "audio"
        width = height = 0
        if name == "vp8":
            size = vp8_keyframe_size(data)
            if size is None and not data[0] & 1:
                self._drop(kind)  # says keyframe, but the header is cut or garbled
                return
            if size is not None:
                key = True
                width, height = size
        elif name == "h264":
            h264 = h264_frame(data)
            if not h264.valid:
                self._drop(kind)
                return
            track.sps = h264.sps or track.sps
            track.pps = h264.pps or track.pps
            size = h264_sps_size(track.sps) if h264.idr and track.sps and track.pps else None
            if size is not None:
                key = True
                width, height = size
                if h264.sps is None or h264.pps is None:
                    # Make every keyframe self-contained: a new file can start on it.
                    assert track.sps is not None and track.pps is not None
                    data = _annex_b(track.sps, track.pps) + data
        if key:
            self._counts[kind].keyframes += 1

        pos = track.timeline.place(timestamp, now)
        if pos is None:
            self._drop(kind)
            return
        track.last_arrival = now
        frame = _Frame(
            kind,
            name,
            clock_rate,
            data,
            key,
            pos,
            track.timeline.ticks,
            track.timeline.base_ns,
            now,
            width,
            height,
        )
        self._route(frame, now)

    # -- routing ---------------------------------------------------------------------------------

    def _route(self, frame: _Frame, now: float) -> None:
        if self._previous is not None and self._to_previous(frame, now):
            return
        current = self._file
        if current is None:
            self._buffer(frame, now)
            if self._ready(now):
                self._open(now)
            return
        fits = current.accepts(frame.kind, frame.codec, frame.clock_rate)
        if not fits or (self._rotate_ns is not None and frame.pos_ns - current.start_ns >= self._rotate_ns):
            self._switch_due = True
        if self._switch_due:
            if self._video_live(now):
                if frame.kind == "video" and frame.keyframe:
                    self._cut(frame, now)
                    return
                self._keyframes(now)
            elif frame.kind == "audio":
                self._cut(frame, now)
                return
            if not fits:
                self._buffer(frame, now)
                return
        self._write_to(current, frame)

    def _video_live(self, now: float) -> bool:
        track = self._tracks.get("video")
        return track is not None and now - track.last_arrival <= self._wait_s

    def _buffer(self, frame: _Frame, now: float) -> None:
        """Keep a frame for the next file; video only from a keyframe on."""
        pending = self._pending
        if frame.kind == "video" and not frame.keyframe and not any(f.kind == "video" for f in pending):
            self._drop("video")
            self._keyframes(now)
            return
        pending.append(frame)
        while len(pending) > 1 and frame.pos_ns - pending[0].pos_ns > 2 * self._wait_ns:
            self._drop(pending.pop(0).kind)  # waited too long for a keyframe to start on

    def _ready(self, now: float) -> bool:
        """Whether the first file can start: every expected kind is here, or we waited enough."""
        pending = self._pending
        if not pending:
            return False
        return (
            self._kinds <= {f.kind for f in pending}
            or now - pending[0].arrival >= self._wait_s
            or pending[-1].pos_ns - pending[0].pos_ns >= self._wait_ns
        )

    def _cut(self, frame: _Frame, now: float) -> None:
        """End the current file at ``frame`` and start the next one with it."""
        old = self._file
        assert old is not None
        self._file = None
        self._switch_due = False
        self._close_previous()
        if "audio" in old.formats:
            self._previous, self._previous_cut_ns, self._previous_until = old, frame.pos_ns, now + 1.0
        else:
            self._close(old)
        self._buffer(frame, now)
        self._open(now)

    def _to_previous(self, frame: _Frame, now: float) -> bool:
        """Send audio from before the last cut to the file before it; close that file once audio
        has caught up (or after a second)."""
        previous = self._previous
        assert previous is not None
        if frame.kind == "audio" and now < self._previous_until and frame.pos_ns < self._previous_cut_ns:
            if previous.accepts(frame.kind, frame.codec, frame.clock_rate):
                self._write_to(previous, frame)
                return True
            return False
        if frame.kind == "audio" or now >= self._previous_until:
            self._close_previous()
        return False

    def _open(self, now: float) -> None:
        frames, self._pending = self._pending, []
        if not frames:
            return
        streams: dict[Kind, StreamFormat] = {}
        for f in frames:
            if f.kind not in streams:
                streams[f.kind] = StreamFormat(f.kind, f.codec, f.clock_rate, f.width, f.height)
        audio = self._tracks.get("audio")
        if "audio" not in streams and audio is not None and now - audio.last_arrival <= self._wait_s:
            streams["audio"] = StreamFormat("audio", audio.codec, audio.clock_rate)
        streams = {kind: streams[kind] for kind in ("video", "audio") if kind in streams}  # video first
        start_ns = min(f.pos_ns for f in frames)
        fmt = container_format(streams, self._h264_format)
        assert self._started is not None
        created = at_offset(self._started, start_ns)
        path = reserve_path(self.directory, recording_name(self.participant, created, fmt))
        self.files.append(path)
        self._file = ContainerFile(
            path, fmt, streams, start_ns=start_ns, title=self.participant, created=created
        )
        log.info("recording_started: %s (%s)", path, ", ".join(f"{k} {s.codec}" for k, s in streams.items()))
        for f in frames:
            self._write_to(self._file, f)

    def _write_to(self, file: ContainerFile, frame: _Frame) -> None:
        pts = file_pts(frame.ticks, frame.base_ns, frame.clock_rate, file.start_ns)
        if file.write(frame.kind, frame.data, pts, frame.keyframe):
            self._counts[frame.kind].extra["written"] += 1
        else:
            self._drop(frame.kind)

    def _drop(self, kind: Kind) -> None:
        self._counts[kind].dropped += 1

    # -- ending ----------------------------------------------------------------------------------

    def _close(self, file: ContainerFile) -> None:
        file.close()
        log.info(
            "recording_closed: %s (%s)",
            file.path,
            ", ".join(f"{n} {k} frames" for k, n in file.frames.items()),
        )

    def _close_previous(self) -> None:
        previous, self._previous = self._previous, None
        if previous is not None:
            self._close(previous)

    def _fail(self, exc: Exception) -> None:
        self.error = MediaError(f"recording of {self.participant!r} failed and stopped: {exc}")
        self.error.__cause__ = exc
        log.error("recording_failed: %s", self.error, exc_info=exc)
        for file in (self._previous, self._file):
            if file is not None:
                try:
                    file.close()
                except Exception as close_exc:
                    log.warning("recording_close_failed: %s: %s", file.path, close_exc)
        self._previous = self._file = None
        for f in self._pending:
            self._drop(f.kind)
        self._pending = []

    def close(self) -> None:
        """Write out what is buffered and finalize every open file. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.error is not None:
                return
            try:
                if self._file is None:
                    self._open(self._clock())
                else:
                    for f in self._pending:  # a new kind that never got its keyframe
                        self._drop(f.kind)
                    self._pending = []
                self._close_previous()
                if self._file is not None:
                    file, self._file = self._file, None
                    self._close(file)
            except Exception as exc:
                self._fail(exc)


# --------------------------------------------------------------------------- frames

_DECODERS = {"vp8": "vp8", "h264": "h264", "opus": "opus", "pcmu": "pcm_mulaw", "pcma": "pcm_alaw"}


_Decoder = av.VideoCodecContext | av.AudioCodecContext


@dataclass(frozen=True)
class _Work:
    kind: Kind
    codec: str
    data: bytes
    pts: int
    clock_rate: int


class FrameSink(_Sink):
    """Decodes received frames and hands each ``av.VideoFrame`` / ``av.AudioFrame`` to ``on_frame``.

    Frames carry ``pts`` in ``time_base = 1/clock_rate`` on the same session clock as
    :class:`RecordSink` (audio and video aligned by first arrival). Video decoding starts at a
    keyframe (asking for one through ``request_keyframe``, as RecordSink does).

    With ``threaded`` (the default) decoding runs on a thread of the sink's own, behind a queue
    of ``queue_size`` frames, and ``on_frame`` is called **on that thread** (use
    ``loop.call_soon_threadsafe`` to get back to asyncio). A full queue drops the frame (video
    then waits for the next keyframe). Without ``threaded``, ``write`` decodes and calls back
    inline. A failing ``on_frame`` is logged and counted (``callback_errors``), never raised.
    ``stats()`` adds ``decoded`` frames, ``decode_errors`` and ``callback_errors`` per kind.
    """

    _extra_keys = ("decoded", "decode_errors", "callback_errors")

    def __init__(
        self,
        on_frame: Callable[[Frame], None],
        *,
        threaded: bool = True,
        queue_size: int = 64,
        request_keyframe: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if queue_size < 1:
            raise MediaError(f"frame sink queue size {queue_size} is invalid: use 1 or more")
        super().__init__()
        self._on_frame = on_frame
        self._clock = clock
        self._keyframes = _KeyframeRequests(request_keyframe)
        self._origin: float | None = None
        self._timelines: dict[Kind, tuple[str, Timeline]] = {}
        self._need_keyframe = {"audio": False, "video": True}
        self._decode_failed = False  # set by the decoder, read by write(): ask for a keyframe
        self._decoders: dict[Kind, tuple[str, _Decoder]] = {}  # only the decoding thread
        self._queue: queue.Queue[_Work | None] | None = None
        self._thread: threading.Thread | None = None
        if threaded:
            self._queue = queue.Queue(queue_size)
            self._thread = threading.Thread(target=self._run, name=f"frame-sink-{id(self):x}", daemon=True)
            self._thread.start()

    def write(
        self, kind: Kind, codec: str, data: bytes, timestamp: int, clock_rate: int, keyframe: bool
    ) -> None:
        counts = self._counts.get(kind)
        if counts is None:
            return
        with self._lock:
            counts.frames += 1
            counts.bytes += len(data)
            work = self._accept(counts, kind, codec, data, timestamp, clock_rate)
            if work is None:
                return
            if self._queue is not None:
                try:
                    self._queue.put_nowait(work)
                except queue.Full:
                    counts.dropped += 1
                    if kind == "video":
                        self._need_keyframe[kind] = True
                        self._keyframes(self._clock())
                return
        self._decode(work)  # unthreaded: outside the lock, so on_frame may call stats()

    def _accept(
        self, counts: _Counts, kind: Kind, codec: str, data: bytes, timestamp: int, clock_rate: int
    ) -> _Work | None:
        name = codec_of(codec)
        if self._closed or not data or name is None or clock_rate <= 0:
            counts.dropped += 1
            return None
        now = self._clock()
        if self._origin is None:
            self._origin = now
        entry = self._timelines.get(kind)
        if entry is None or entry[0] != name or entry[1].clock_rate != clock_rate:
            entry = (name, Timeline(clock_rate, int((now - self._origin) * NS)))
            self._timelines[kind] = entry
            self._need_keyframe[kind] = kind == "video"
        timeline = entry[1]
        key = is_keyframe(name, data)
        counts.keyframes += key
        if timeline.place(timestamp, now) is None:
            counts.dropped += 1
            return None
        if self._decode_failed and kind == "video":
            self._decode_failed = False
            self._keyframes(now)
        if self._need_keyframe[kind]:
            if not key:
                counts.dropped += 1
                self._keyframes(now)
                return None
            self._need_keyframe[kind] = False
        pts = file_pts(timeline.ticks, timeline.base_ns, clock_rate, 0)
        return _Work(kind, name, data, pts, clock_rate)

    def _run(self) -> None:
        assert self._queue is not None
        while (work := self._queue.get()) is not None:
            self._decode(work)

    def _decoder(self, kind: Kind, codec: str) -> _Decoder:
        entry = self._decoders.get(kind)
        if entry is not None and entry[0] == codec:
            return entry[1]
        ctx = av.CodecContext.create(_DECODERS[codec], "r")
        if isinstance(ctx, av.AudioCodecContext):
            mono = codec in ("pcmu", "pcma")
            ctx.sample_rate = 8000 if mono else 48000
            ctx.layout = "mono" if mono else "stereo"
        elif isinstance(ctx, av.VideoCodecContext):
            ctx.thread_count = 1  # frame threading would hold frames back
        else:
            raise AssertionError(f"{codec} decoder is neither audio nor video")
        self._decoders[kind] = (codec, ctx)
        return ctx

    def _decode(self, work: _Work) -> None:
        ctx = self._decoder(work.kind, work.codec)
        packet: Packet = av.Packet(work.data)
        packet.pts = packet.dts = work.pts
        packet.time_base = fractions.Fraction(1, work.clock_rate)
        try:
            frames = ctx.decode(packet)
        except av.FFmpegError as exc:
            log.debug("frame_decode_failed: %s %s: %s", work.kind, work.codec, exc)
            with self._lock:
                self._counts[work.kind].extra["decode_errors"] += 1
                self._decode_failed = self._decode_failed or work.kind == "video"
            return
        self._deliver(work.kind, frames)

    def _deliver(self, kind: Kind, frames: list[Any]) -> None:
        for frame in frames:
            with self._lock:
                self._counts[kind].extra["decoded"] += 1
            try:
                self._on_frame(frame)
            except Exception as exc:
                with self._lock:
                    self._counts[kind].extra["callback_errors"] += 1
                log.error("frame_callback_failed: %s", exc, exc_info=exc)

    def close(self) -> None:
        """Decode what is queued, flush the decoders, stop the thread. Idempotent.

        Blocks while the queue drains (at most ``queue_size`` frames): use :meth:`aclose` from
        asyncio.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._queue is not None and self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            if self._thread.is_alive():
                log.warning("frame_sink_stuck: the decoding thread did not end within 30 s")
                return
        for kind, (_, ctx) in list(self._decoders.items()):
            try:
                self._deliver(kind, ctx.decode(None))
            except av.FFmpegError as exc:
                log.debug("frame_flush_failed: %s: %s", kind, exc)
        self._decoders.clear()


# --------------------------------------------------------------------------- factory


def make_sink(kind: SinkKind, **kw: Any) -> EncodedSink:
    """``discard``: :class:`DiscardSink`; ``record``: :class:`RecordSink` (``directory``,
    ``participant``...); ``frames``: :class:`FrameSink` (``on_frame``...). Keywords go to the
    constructor."""
    if kind == "discard":
        return DiscardSink(**kw)
    if kind == "record":
        return RecordSink(**kw)
    if kind == "frames":
        return FrameSink(**kw)
    raise MediaError(f"sink kind {kind!r} is unknown: use 'discard', 'record' or 'frames'")
