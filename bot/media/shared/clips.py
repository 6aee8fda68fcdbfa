"""Reading a pre-encoded file into memory as clips its codecs can send as they are.

One :class:`Clip` per stream (H.264, VP8, Opus, G.711), in the RTP clock of its codec, checked
once at load so a file that cannot be sent fails before any bot joins.
"""

from __future__ import annotations

import bisect
import math
import os
import re
from dataclasses import dataclass

import av
import av.audio.stream
import av.bitstream
import av.error
import av.stream
import av.video.stream

from ..errors import MediaSourceError
from .fanout import Kind, Packet

MAX_BYTES = 256 * 1024 * 1024
"""Refuse files whose sendable packets would take more memory than this."""

_ATTACHED_PIC = av.stream.Disposition.attached_pic
_HOW_TO_FIX = (
    "re-encode it, e.g. ffmpeg -i IN -c:v libvpx -b:v 500k -g 15 -c:a libopus OUT.webm "
    "(or H.264 baseline with -bf 0 in .ts), or use it as a decoded file source"
)


@dataclass(frozen=True)
class _Codec:
    kind: Kind
    mime_type: str  # as aiortc names the codec it sends it with
    clock_rate: int  # RTP clock


_SENDABLE = {
    "h264": _Codec("video", "video/H264", 90000),
    "vp8": _Codec("video", "video/VP8", 90000),
    "opus": _Codec("audio", "audio/opus", 48000),
    "pcm_alaw": _Codec("audio", "audio/PCMA", 8000),
    "pcm_mulaw": _Codec("audio", "audio/PCMU", 8000),
}
_G711_SILENCE = {"pcm_alaw": b"\xd5", "pcm_mulaw": b"\xff"}
_G711_CHUNK = 160  # 20 ms at 8 kHz, one byte a sample


@dataclass(frozen=True)
class Clip:
    """One stream of a file, in memory, in the RTP clock of its codec."""

    kind: Kind
    mime_type: str
    """The aiortc codec to send it with, e.g. ``video/H264``."""
    clock_rate: int
    """RTP clock rate; ``offsets`` and ``span`` count its ticks."""
    payloads: tuple[bytes, ...]
    """What each packet carries: Annex-B H.264, a VP8 frame, one Opus or 20 ms G.711 packet."""
    offsets: tuple[int, ...]
    """When each packet is due, in ticks from the start of the pass; strictly increasing."""
    keyframes: tuple[bool, ...]
    """Whether a decoder can start at the packet (always true for audio)."""
    span: int
    """Length of one pass in ticks: the last packet's offset plus its duration."""

    def __len__(self) -> int:
        return len(self.payloads)

    @property
    def seconds(self) -> float:
        return self.span / self.clock_rate

    def locate(self, position: float, period: int, loop: bool) -> tuple[int, int] | None:
        """The pass and index of the first packet due at or after ``position`` seconds."""
        ticks = math.ceil(position * self.clock_rate)
        cycle, within = divmod(ticks, period) if loop else (0, ticks)
        index = bisect.bisect_left(self.offsets, within)
        if index < len(self.offsets):
            return cycle, index
        return (cycle + 1, 0) if loop else None


def _opus_samples(payload: bytes) -> int:
    """Samples at 48 kHz in one Opus packet, from its TOC byte (RFC 6716, section 3.1)."""
    toc = payload[0]
    config = toc >> 3
    if config < 12:  # SILK: 10, 20, 40, 60 ms
        frame = (480, 960, 1920, 2880)[config % 4]
    elif config < 16:  # hybrid: 10, 20 ms
        frame = (480, 960)[config % 2]
    else:  # CELT: 2.5, 5, 10, 20 ms
        frame = (120, 240, 480, 960)[config % 4]
    code = toc & 3
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:
        count = payload[1] & 0x3F if len(payload) > 1 else 0
    return frame * count


_START_CODE = re.compile(b"\x00\x00\x01")


def _nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B buffer, without their start codes."""
    starts = [m.end() for m in _START_CODE.finditer(data)]
    units = []
    for i, start in enumerate(starts):
        end = starts[i + 1] - 3 if i + 1 < len(starts) else len(data)
        unit = data[start:end].rstrip(b"\x00")  # trailing zeros belong to a 4-byte start code
        if unit:
            units.append(unit)
    return units


class _H264:
    """Annex-B H.264 made self-contained: keyframes are IDR pictures carrying SPS and PPS."""

    def __init__(self, where: str, stream: av.video.stream.VideoStream) -> None:
        self._where = where
        self._sps: bytes | None = None
        self._pps: bytes | None = None
        extradata = stream.codec_context.extradata or b""
        self._annexb = extradata[:3] == b"\x00\x00\x01" or extradata[:4] == b"\x00\x00\x00\x01"
        if self._annexb:
            self._remember(_nal_units(extradata))
            self._bsf = None
        else:  # MP4/MKV store length-prefixed NAL units and the parameter sets aside
            self._bsf = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", stream)

    def _remember(self, units: list[bytes]) -> None:
        for unit in units:
            if unit[0] & 0x1F == 7:
                self._sps = unit
            elif unit[0] & 0x1F == 8:
                self._pps = unit

    def annexb(self, packet: Packet | None) -> list[Packet]:
        if self._bsf is None:
            return [] if packet is None else [packet]
        return list(self._bsf.filter(packet))

    def payload(self, data: bytes) -> tuple[bytes, bool]:
        units = _nal_units(data)
        types = {unit[0] & 0x1F for unit in units}
        self._remember(units)
        keyframe = 5 in types
        if keyframe and 7 not in types:
            if self._sps is None or self._pps is None:
                raise MediaSourceError(
                    f"{self._where} has an H.264 keyframe without SPS/PPS before it: {_HOW_TO_FIX}"
                )
            data = b"\x00\x00\x00\x01" + self._sps + b"\x00\x00\x00\x01" + self._pps + data
        return data, keyframe


def _check_path(where: str, path: str) -> None:
    if not os.path.exists(path):
        raise MediaSourceError(f"{where} does not exist: check media.file in the config")
    if os.path.isdir(path):
        raise MediaSourceError(f"{where} is a directory, not a file: check media.file in the config")
    if not os.access(path, os.R_OK):
        raise MediaSourceError(f"{where} is not readable: check its permissions")


def _codec_of(where: str, stream: av.stream.Stream) -> _Codec:
    ctx = stream.codec_context
    codec = _SENDABLE.get(ctx.name)
    if codec is None:
        long_name = ctx.codec.long_name if ctx.codec else ctx.name
        raise MediaSourceError(
            f"{where} has {stream.type} in {ctx.name} ({long_name}), which cannot be sent without "
            f"re-encoding (only H.264, VP8, Opus, PCMA, PCMU can): {_HOW_TO_FIX}"
        )
    if not isinstance(stream, av.audio.stream.AudioStream):
        return codec
    if ctx.name.startswith("pcm_") and (stream.sample_rate != 8000 or stream.channels != 1):
        raise MediaSourceError(
            f"{where} has G.711 audio at {stream.sample_rate} Hz with {stream.channels} "
            "channels, but WebRTC sends G.711 as 8000 Hz mono: re-encode the audio "
            "(ffmpeg -ar 8000 -ac 1) or use Opus"
        )
    if ctx.name == "opus" and stream.channels > 2:
        raise MediaSourceError(
            f"{where} has {stream.channels}-channel Opus, but WebRTC sends mono or stereo: "
            "re-encode it with -ac 2"
        )
    return codec


class _Builder:
    """Collects one stream's packets in decode order and turns them into a :class:`Clip`."""

    def __init__(self, where: str, stream: av.stream.Stream, codec: _Codec) -> None:
        self.where = where
        self.stream = stream
        self.codec = codec
        self.name = stream.codec_context.name
        self.payloads: list[bytes] = []
        self.times: list[float | None] = []  # seconds, from the container (video)
        self.durations: list[float | None] = []
        self.keyframes: list[bool] = []
        self.last_pts: int | None = None
        self.reordered = False
        self.h264 = (
            _H264(where, stream)
            if isinstance(stream, av.video.stream.VideoStream) and self.name == "h264"
            else None
        )

    def add(self, packet: Packet) -> int:
        """Take one demuxed packet; return the bytes kept."""
        if self.h264 is None:
            return self._add(packet)
        return sum(self._add(p) for p in self.h264.annexb(packet))

    def flush(self) -> None:
        if self.h264 is not None:
            for p in self.h264.annexb(None):
                self._add(p)

    def _add(self, packet: Packet) -> int:
        data = bytes(packet)
        if not data:
            return 0
        if self.h264 is not None:
            data, keyframe = self.h264.payload(data)
        elif self.name == "vp8":
            keyframe = not data[0] & 1  # the frame tag's inverted key-frame bit
        else:
            keyframe = True
        if packet.pts is not None:
            if self.last_pts is not None and packet.pts < self.last_pts:
                self.reordered = True  # B-frames: presentation order differs from decode order
            self.last_pts = packet.pts
        ts = packet.dts if packet.dts is not None else packet.pts
        tb = packet.time_base
        self.times.append(float(ts * tb) if ts is not None and tb is not None else None)
        self.durations.append(float(packet.duration * tb) if packet.duration and tb is not None else None)
        self.payloads.append(data)
        self.keyframes.append(keyframe)
        return len(data)

    def build(self) -> Clip:
        if not self.payloads:
            raise MediaSourceError(f"{self.where} has an empty {self.codec.kind} stream: {_HOW_TO_FIX}")
        if self.codec.kind == "video":
            return self._video()
        if self.name == "opus":
            return self._opus()
        return self._g711()

    def _video(self) -> Clip:
        if self.reordered:
            raise MediaSourceError(
                f"{self.where} has H.264 with B-frames, which WebRTC receivers cannot play: "
                "re-encode with -bf 0 (e.g. -profile:v baseline)"
            )
        if not any(self.keyframes):
            raise MediaSourceError(f"{self.where} has no {self.name} keyframe to start from: {_HOW_TO_FIX}")
        first_key = self.keyframes.index(True)  # nobody can decode what comes before it
        rate = self.stream.guessed_rate or self.stream.average_rate
        frame_dur = float(1 / rate) if rate else 1 / 25
        seconds: list[float] = []
        origin: float | None = None
        for raw, dur in zip(self.times[first_key:], self.durations[first_key:], strict=True):
            t: float | None = None
            if raw is not None:
                origin = raw if origin is None else origin
                t = raw - origin
            if not seconds:
                t = 0.0
            elif t is None or t <= seconds[-1]:
                t = seconds[-1] + frame_dur  # no timestamp (raw H.264) or a broken one
            else:
                frame_dur = t - seconds[-1]  # the file's rate, even if it varies
            seconds.append(t)
            frame_dur = dur or frame_dur
        last = self.durations[-1] or frame_dur
        offsets = [round(s * self.codec.clock_rate) for s in seconds]
        for i in range(1, len(offsets)):  # rounding must not make two packets share a time
            offsets[i] = max(offsets[i], offsets[i - 1] + 1)
        return self._clip(
            self.payloads[first_key:],
            offsets,
            self.keyframes[first_key:],
            offsets[-1] + max(1, round(last * self.codec.clock_rate)),
        )

    def _opus(self) -> Clip:
        # The container's timestamps are trimmed (pre-skip, end padding); every packet decodes to
        # the whole duration its TOC says, so that is its duration on the wire.
        offsets, at = [], 0
        payloads = []
        for data in self.payloads:
            samples = _opus_samples(data)
            if samples <= 0:
                continue  # an empty or malformed packet: nothing to play
            payloads.append(data)
            offsets.append(at)
            at += samples
        if not payloads:
            raise MediaSourceError(f"{self.where} has no valid Opus packet: {_HOW_TO_FIX}")
        return self._clip(payloads, offsets, [True] * len(payloads), at)

    def _g711(self) -> Clip:
        pcm = b"".join(self.payloads)
        pad = -len(pcm) % _G711_CHUNK
        pcm += _G711_SILENCE[self.name] * pad
        chunks = [pcm[i : i + _G711_CHUNK] for i in range(0, len(pcm), _G711_CHUNK)]
        offsets = [i * _G711_CHUNK for i in range(len(chunks))]
        return self._clip(chunks, offsets, [True] * len(chunks), len(pcm))

    def _clip(self, payloads: list[bytes], offsets: list[int], keyframes: list[bool], span: int) -> Clip:
        return Clip(
            kind=self.codec.kind,
            mime_type=self.codec.mime_type,
            clock_rate=self.codec.clock_rate,
            payloads=tuple(payloads),
            offsets=tuple(offsets),
            keyframes=tuple(keyframes),
            span=span,
        )


def _check_decodes(where: str, stream: av.stream.Stream, clip: Clip) -> None:
    """Decode the first keyframe: a file can demux fine and still carry garbage."""
    decoder = av.CodecContext.create(stream.codec_context.name, "r")
    if stream.codec_context.extradata and clip.mime_type != "video/H264":
        decoder.extradata = stream.codec_context.extradata
    if isinstance(decoder, av.AudioCodecContext) and isinstance(stream, av.audio.stream.AudioStream):
        decoder.sample_rate = stream.sample_rate
        decoder.layout = "mono" if stream.channels == 1 else "stereo"
    assert isinstance(decoder, av.AudioCodecContext | av.VideoCodecContext)
    try:
        packet = av.Packet(clip.payloads[clip.keyframes.index(True)])
        frames = len(decoder.decode(packet)) + len(decoder.decode(None))
    except av.FFmpegError as exc:
        raise MediaSourceError(
            f"{where} has a {clip.mime_type} stream whose first keyframe does not decode "
            f"({exc.strerror or exc}): {_HOW_TO_FIX}"
        ) from exc
    if not frames:
        raise MediaSourceError(
            f"{where} has a {clip.mime_type} stream whose first keyframe does not decode: {_HOW_TO_FIX}"
        )


_LOADED: dict[tuple[str, int, int], tuple[Clip | None, Clip | None]] = {}
_LOADED_MAX = 8


def load_clips(path: str) -> tuple[Clip | None, Clip | None]:
    """:func:`read_clips`, once per file version and process: ``check`` before ``run`` and every
    shared source of one file get the same (immutable) clips instead of demuxing it again."""
    try:
        st = os.stat(path)
    except OSError:
        return read_clips(path)  # says what is wrong with the path
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    clips = _LOADED.get(key)
    if clips is None:
        clips = read_clips(path)
        if len(_LOADED) >= _LOADED_MAX:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = clips
    return clips


def read_clips(path: str) -> tuple[Clip | None, Clip | None]:
    """Read the first audio and video stream of ``path`` into memory: ``(audio, video)``.

    Raises :class:`MediaSourceError` for a missing or unreadable file, a file FFmpeg cannot open, no
    audio or video, a codec that cannot be sent without re-encoding, or a stream that does not
    decode. A file with several streams of one kind uses the first.
    """
    where = f"media file {path!r}"
    _check_path(where, path)
    try:
        with av.open(path) as container:
            audio = next(iter(container.streams.audio), None)
            videos = [s for s in container.streams.video if not s.disposition & _ATTACHED_PIC]
            video = videos[0] if videos else None
            if audio is None and video is None:
                raise MediaSourceError(
                    f"{where} has no audio or video stream: use a file with audio, video or both"
                )
            builders = {
                s.index: _Builder(where, s, _codec_of(where, s)) for s in (audio, video) if s is not None
            }
            total = 0
            for packet in container.demux([s for s in (audio, video) if s is not None]):
                builder = builders.get(packet.stream.index)
                if builder is None or packet.size == 0:
                    continue
                total += builder.add(packet)
                if total > MAX_BYTES:
                    raise MediaSourceError(
                        f"{where} holds more than {MAX_BYTES >> 20} MB of media, too much to keep "
                        "in memory: cut a shorter clip to loop"
                    )
            for builder in builders.values():
                builder.flush()
            clips = {b.codec.kind: (b.stream, b.build()) for b in builders.values()}
            for stream, clip in clips.values():
                _check_decodes(where, stream, clip)
    except av.FFmpegError as exc:
        raise MediaSourceError(
            f"{where} cannot be read by PyAV: {exc.strerror or exc}: use a file that FFmpeg can open"
        ) from exc
    a = clips.get("audio")
    v = clips.get("video")
    return (a[1] if a else None, v[1] if v else None)
