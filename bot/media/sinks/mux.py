"""Building blocks of recording: RTP timelines, file names, and one container file being written.

:class:`Timeline` turns one stream's 32-bit RTP timestamps into positions on a recording's
session clock (nanoseconds since its first frame arrived), unwrapping and surviving sender
restarts. :class:`ContainerFile` muxes encoded frames into one file with PyAV as they come, no
decoding and no re-encoding, in a form that stays readable if the process dies mid-file.
:func:`recording_name` makes the file name. ``bot.media.sinks.RecordSink`` puts them together.
"""

from __future__ import annotations

import fractions
import io
import os
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import av
import av.audio.stream
import av.container
import av.stream

from ..bitstream import opus_samples
from ..shared.fanout import Kind, Packet

NS = 1_000_000_000
WRAP = 1 << 32
HALF_WRAP = 1 << 31

MAX_BACKSTEP_S = 1.0
"""A timestamp this far behind the last one is a restarted sender, not a late frame."""
MAX_LEAP_S = 10.0
"""A timestamp this much further ahead than the arrival clock moved is a restarted sender."""

ContainerFormat = Literal["webm", "mp4", "mpegts"]
EXTENSIONS: dict[ContainerFormat, str] = {"webm": ".webm", "mp4": ".mp4", "mpegts": ".ts"}

_FORMAT_OPTIONS: dict[ContainerFormat, dict[str, str]] = {
    # Matroska written by libavformat starts its Segment with an unknown size and fills in size,
    # duration and cues on close: a file cut short still reads up to its last cluster. Clusters
    # reach the file at most every second (or 2 MiB); flush_packets pushes each one to the OS.
    "webm": {"cluster_time_limit": "1000", "cluster_size_limit": "2097152"},
    # Fragmented MP4: a header without sample tables (empty_moov), then one self-contained
    # moof+mdat fragment per second or per keyframe. A cut file reads to its last whole fragment;
    # a plain MP4 keeps its index for the end and is unreadable if never closed.
    "mp4": {"movflags": "frag_keyframe+empty_moov+default_base_moof", "frag_duration": "1000000"},
    # MPEG-TS is a sequence of self-describing 188-byte packets: readable wherever it stops.
    "mpegts": {},
}
_COMMON_OPTIONS = {
    "flush_packets": "1",
    # Wait at most 1 s for a stream that went quiet (e.g. muted video) before writing the others,
    # so frames do not pile up in the interleaving queue.
    "max_interleave_delta": "1000000",
}

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(participant: str, limit: int = 64) -> str:
    """``participant`` as a portable file name part: ASCII letters, digits, ``.``, ``_``, ``-``.

    Accents are folded (``José`` -> ``Jose``), other runs of characters become one ``_``, leading
    dots and dashes go (no hidden files, no options); empty becomes ``participant``.
    """
    folded = unicodedata.normalize("NFKD", participant).encode("ascii", "ignore").decode()
    name = _UNSAFE.sub("_", folded).lstrip(".-_")[:limit].rstrip("._-")
    return name or "participant"


def recording_name(participant: str, start: datetime, fmt: ContainerFormat) -> str:
    """``<participant>-<YYYYmmddTHHMMSSZ>.<ext>``, in UTC (a naive ``start`` is taken as UTC)."""
    utc = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    return f"{safe_name(participant)}-{utc:%Y%m%dT%H%M%SZ}{EXTENSIONS[fmt]}"


def reserve_path(directory: Path, name: str) -> Path:
    """Create ``directory/name`` empty and return it; ``-2``, ``-3``... before the extension if
    taken. Creation is atomic (``O_EXCL``), so two recorders never write one file."""
    stem, dot, ext = name.rpartition(".")
    for n in range(1, 10_000):
        path = directory / (name if n == 1 else f"{stem}-{n}{dot}{ext}")
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free file name for {name} in {directory}")


def file_pts(ticks: int, base_ns: int, clock_rate: int, start_ns: int) -> int:
    """A frame's timestamp in RTP ticks from session position ``start_ns`` (a file's start),
    given its :attr:`Timeline.ticks` and :attr:`Timeline.base_ns` when it was placed."""
    offset = (base_ns - start_ns) * clock_rate
    return ticks + (offset + NS // 2) // NS


def at_offset(start: datetime, ns: int) -> datetime:
    """``start`` moved ``ns`` nanoseconds on."""
    return start + timedelta(microseconds=ns // 1000)


class Timeline:
    """One stream's RTP timestamps as positions on the session clock, in nanoseconds.

    The first frame is placed at ``origin_ns``: when it arrived, counted from the arrival of the
    recording's first frame of any kind, which is how audio and video are aligned (their RTP
    clocks have random, unrelated origins; RTCP sender reports would be more exact). From
    there the position follows the RTP timestamp, unwrapped at 2**32 by taking each step as a
    signed 32-bit difference, so a wrap is just one more step. Steps that make no sense are
    handled without a gap of hours or a file full of dropped frames:

    - a step back of less than :data:`MAX_BACKSTEP_S` is a late or repeated frame: it is refused
      (``place`` returns None) and the caller drops it;
    - a step back of more, or a step forward more than :data:`MAX_LEAP_S` beyond what the arrival
      clock moved, is a restarted sender (new SSRC, new random origin): the timeline is re-anchored
      so that the frame follows the previous one by the arrival time between them (``resets``).

    Forward steps are otherwise trusted over the arrival clock, so frames fed faster than real
    time (tests, files) keep their media timing.
    """

    def __init__(self, clock_rate: int, origin_ns: int) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock rate {clock_rate} is invalid")
        self.clock_rate = clock_rate
        self.resets = 0
        self._base_ns = origin_ns  # session position of tick 0
        self._ticks = 0  # unwrapped ticks since the base
        self._last_ts: int | None = None
        self._last_arrival = 0.0

    @property
    def ticks(self) -> int:
        """Ticks of the last placed frame since the base."""
        return self._ticks

    @property
    def base_ns(self) -> int:
        """Session position of tick 0 (moves on a reset)."""
        return self._base_ns

    def position_ns(self) -> int:
        """Session position of the last placed frame."""
        return self._base_ns + self._ticks * NS // self.clock_rate

    def place(self, timestamp: int, arrival: float) -> int | None:
        """The session position (ns) of a frame with this RTP timestamp; None to drop it."""
        timestamp &= WRAP - 1
        last = self._last_ts
        if last is None:
            self._last_ts, self._last_arrival = timestamp, arrival
            return self._base_ns
        step = (timestamp - last) & (WRAP - 1)
        if step >= HALF_WRAP:
            step -= WRAP
        waited = max(0.0, arrival - self._last_arrival)
        if step <= 0 and -step < MAX_BACKSTEP_S * self.clock_rate:
            return None
        if step <= 0 or step > (waited + MAX_LEAP_S) * self.clock_rate:
            self.resets += 1
            self._base_ns = self.position_ns() + max(int(waited * NS), NS // 1000)
            self._ticks = 0
        else:
            self._ticks += step
        self._last_ts, self._last_arrival = timestamp, arrival
        return self.position_ns()


@dataclass(frozen=True)
class StreamFormat:
    """One stream of a container file, fixed when the file is created."""

    kind: Kind
    codec: str
    """``vp8``, ``h264`` or ``opus``."""
    clock_rate: int
    """RTP clock: packet timestamps are in these ticks."""
    width: int = 0
    height: int = 0


def container_format(streams: dict[Kind, StreamFormat], h264: ContainerFormat) -> ContainerFormat:
    """WebM for VP8 and for audio alone; ``h264`` (``mp4`` or ``mpegts``) for H.264."""
    video = streams.get("video")
    return h264 if video is not None and video.codec == "h264" else "webm"


def opus_head(channels: int = 2, pre_skip: int = 0) -> bytes:
    """An ``OpusHead`` (RFC 7845 section 5.1), the codec private data of Opus in WebM and MP4.

    RTP says nothing of the encoder's pre-skip, so it is 0; channels default to 2, as RTP Opus is
    always signalled (a mono packet decodes to both channels).
    """
    return (
        b"OpusHead"
        + bytes([1, channels])
        + pre_skip.to_bytes(2, "little")
        + (48000).to_bytes(4, "little")
        + b"\x00\x00\x00"  # output gain 0, channel mapping family 0
    )


class ContainerFile:
    """One file being muxed with PyAV: streams fixed up front, packets written as they come.

    ``write`` takes a frame's bytes and its timestamp in the stream's RTP ticks from the start of
    the file and hands it to libavformat, which writes it out within about a second (see the
    format options above). Timestamps must increase per stream; a frame that does not is refused
    (``write`` returns False). Errors from PyAV propagate: the owner decides what a failing file
    means. :meth:`close` writes the trailer (duration, index). Not thread-safe: the owner locks.
    """

    def __init__(
        self,
        path: Path,
        fmt: ContainerFormat,
        streams: dict[Kind, StreamFormat],
        *,
        start_ns: int,
        title: str = "",
        created: datetime | None = None,
    ) -> None:
        self.path = path
        self.format = fmt
        self.formats = dict(streams)
        self.start_ns = start_ns
        """Session position that is time 0 in this file."""
        self.frames: dict[Kind, int] = dict.fromkeys(streams, 0)
        """Frames written per kind."""
        self._last: dict[Kind, int] = {}
        self._time_bases = {kind: fractions.Fraction(1, f.clock_rate) for kind, f in streams.items()}
        options = {**_COMMON_OPTIONS, **_FORMAT_OPTIONS[fmt]}
        self._container = av.open(str(path), "w", format=fmt, options=options)
        try:
            if title:
                self._container.metadata["title"] = title
            if created is not None:
                self._container.metadata["creation_time"] = created.astimezone(UTC).strftime(
                    "%Y-%m-%dT%H:%M:%S.%fZ"
                )
            self._streams = {kind: self._add_stream(f) for kind, f in streams.items()}
        except BaseException:
            self._container.close()
            raise
        self._closed = False

    def _add_stream(self, f: StreamFormat) -> av.stream.Stream:
        if f.kind == "video":
            # Extradata (the H.264 SPS/PPS for MP4) is taken by PyAV from the first packet.
            stream = self._container.add_mux_stream(f.codec, width=f.width, height=f.height)
        else:
            # A stream without codec context cannot carry extradata or a channel layout; a
            # template stream's context is copied but never opened (no encoder is created).
            with av.open(io.BytesIO(), "w", format="matroska") as scratch:
                template = scratch.add_stream("libopus", rate=48000)
                stream = self._container.add_stream_from_template(template, opaque=True)
            ctx = stream.codec_context
            assert isinstance(ctx, av.AudioCodecContext)
            ctx.extradata = opus_head()
            ctx.layout = "stereo"
            ctx.sample_rate = 48000
        stream.time_base = fractions.Fraction(1, f.clock_rate)
        return stream

    def accepts(self, kind: Kind, codec: str, clock_rate: int) -> bool:
        """Whether this file has a stream for such frames."""
        f = self.formats.get(kind)
        return f is not None and f.codec == codec and f.clock_rate == clock_rate

    def write(self, kind: Kind, data: bytes, pts: int, keyframe: bool) -> bool:
        """Mux one frame, ``pts`` in RTP ticks from the start of the file; False if refused."""
        last = self._last.get(kind)
        if pts < 0 or (last is not None and pts <= last):
            return False
        packet: Packet = av.Packet(data)
        packet.stream = self._streams[kind]
        packet.time_base = self._time_bases[kind]
        packet.pts = packet.dts = pts
        packet.is_keyframe = keyframe
        if kind == "audio":
            samples = opus_samples(data)
            if samples is not None:
                packet.duration = samples * self.formats[kind].clock_rate // 48000
        self._container.mux(packet)
        self._last[kind] = pts
        self.frames[kind] += 1
        return True

    def close(self) -> None:
        """Write the trailer and close the file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._container.close()
