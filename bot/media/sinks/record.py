"""Recording received media into files as it comes, without decoding or re-encoding.

VP8 (+ Opus) goes into WebM, H.264 (+ Opus) into fragmented MP4 (or MPEG-TS); the container
writing itself is :mod:`bot.media.sinks.mux`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from ..bitstream import codec_of, h264_frame, h264_sps_size, vp8_keyframe_size
from ..errors import MediaSourceError
from ..shared.fanout import Kind
from .base import KINDS, _KeyframeRequests, _Sink
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

_log = structlog.get_logger(__name__)


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
    (:class:`~bot.media.sinks.mux.Timeline`): audio and video are aligned by the arrival time of
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
        log: Any = None,
    ) -> None:
        self._log = log if log is not None else _log  # the owner's, bound to the stream it records
        if rotate_s is not None and not rotate_s > 0:
            raise MediaSourceError(
                f"recording rotation {rotate_s} s is invalid: use a positive number or none"
            )
        if h264_format not in ("mp4", "mpegts"):
            raise MediaSourceError(
                f"H.264 recording format {h264_format!r} is unknown: use 'mp4' or 'mpegts'"
            )
        if not kinds or not set(kinds) <= set(KINDS):
            raise MediaSourceError(f"recorded kinds {kinds!r} are invalid: use 'audio' and/or 'video'")
        if not start_wait_s > 0:
            raise MediaSourceError(f"recording start wait {start_wait_s} s is invalid: use a positive number")
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MediaSourceError(f"cannot create recording directory {self.directory}: {exc}") from exc
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise MediaSourceError(
                f"recording directory {self.directory} is not writable: fix its permissions"
            )
        super().__init__()
        self.participant = participant
        self.rotate_s = rotate_s
        self.files: list[Path] = []
        """Every file started, in order."""
        self.error: MediaSourceError | None = None
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
                self._log.warning(
                    "recording_codec_unsupported", kind=kind, codec=codec, clock_rate=clock_rate
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
        self._log.info(
            "recording_file_opened", path=str(path), codecs={k: s.codec for k, s in streams.items()}
        )
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
        self._log.info("recording_file_closed", path=str(file.path), frames=dict(file.frames))

    def _close_previous(self) -> None:
        previous, self._previous = self._previous, None
        if previous is not None:
            self._close(previous)

    def _fail(self, exc: Exception) -> None:
        self.error = MediaSourceError(f"recording of {self.participant!r} failed and stopped: {exc}")
        self.error.__cause__ = exc
        self._log.error("recording_failed", error=str(self.error), exc_info=exc)
        for file in (self._previous, self._file):
            if file is not None:
                try:
                    file.close()
                except Exception as close_exc:
                    self._log.warning("recording_close_failed", path=str(file.path), error=str(close_exc))
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
