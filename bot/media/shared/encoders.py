"""Encode once per process, send to every bot: live shared encoders and the process registry.

aiortc encodes per sender: a VP8 640x360@15 + Opus publisher costs about 10% of a core, so a
process tops out near 10 bots a core. Bots in a load test all send the same synthetic picture
and tone, so one :class:`SharedEncoder` per distinct source encodes them once and every bot gets
subscriber tracks (:class:`~bot.media.shared.fanout.PacketTrack`) that return the encoded packets,
which aiortc only packetizes (about 1% of a core per publisher).

The price: all bots send the same picture (``MediaSpec``'s per-bot label tint is not applied),
and one bitrate; aiortc's REMB-driven bitrate adaptation does not apply to packets. Keyframe
requests (PLI/FIR) must be forwarded by the caller: see :meth:`PacketTrack.request_keyframe`.

:class:`SharedMedia` is the per-process registry: the agent creates one, asks it for tracks by
``MediaSpec``, and closes it at exit. It is an explicit object, not module state.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import os
import time
from types import TracebackType
from typing import Self

import av
import av.video.frame

from ..errors import MediaSourceError
from ..sources.synthetic import VIDEO_TIME_BASE, SyntheticVideoTrack, ToneAudioTrack
from ..spec import MediaSpec
from .encoded import EncodedFileSource
from .fanout import DEFAULT_QUEUE_SECONDS, Kind, Packet, PacketStream, PacketTrack, Schedule

AUDIO_RATE = 48000
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)
OPUS_SAMPLES = 960  # 20 ms at 48 kHz

DEFAULT_VIDEO_BITRATE = 500_000
DEFAULT_AUDIO_BITRATE = 32_000
DEFAULT_KEYFRAME_INTERVAL = 3.0
DEFAULT_MIN_KEYFRAME_GAP = 0.5


class SharedEncoder(PacketStream):
    """One live encoder paced in real time, its packets shared by every subscriber track.

    Frame ``n`` is due ``n / rate`` seconds after the encoder first started and carries that
    media time as its timestamp, so timestamps follow the wall clock even across idle periods
    (the encoder runs only while it has subscribers) and after a stalled event loop (frames
    that are too late are skipped, counted in ``frames_skipped``, not sent in a burst).
    """

    def __init__(
        self,
        kind: Kind,
        mime_type: str,
        name: str,
        rate: float,
        *,
        queue_size: int,
        offload: bool,
    ) -> None:
        super().__init__(kind, mime_type, name, queue_size)
        self.rate = rate
        """Frames per second."""
        self.frames_encoded = 0
        self.frames_skipped = 0
        self._offload = offload  # encode on a worker thread, off the event loop
        self._origin: float | None = None

    async def _run(self) -> None:
        now = time.monotonic()
        if self._origin is None:
            self._origin = now
        schedule = Schedule(self._origin)
        index = math.ceil((now - self._origin) * self.rate - 1e-9)
        loop = asyncio.get_running_loop()
        self._open()
        try:
            while self._has_subscribers():
                late = await schedule.wait(index / self.rate)
                if late > schedule.max_lag:
                    skip = math.floor(late * self.rate)
                    self.frames_skipped += skip
                    index += skip
                if not self._has_subscribers():
                    break
                keyframe = self._want_keyframe()
                if self._offload:
                    packets = await loop.run_in_executor(None, self._encode, index, keyframe)
                else:
                    packets = self._encode(index, keyframe)
                self.frames_encoded += 1
                for packet, is_key in packets:
                    self._published_keyframe(is_key)
                    self._publish(packet, is_key)
                index += 1
        finally:
            self._close()

    def _want_keyframe(self) -> bool:
        """Whether to force the next frame to be a keyframe."""
        return False

    def _published_keyframe(self, keyframe: bool) -> None:
        """Hook: a packet has been produced."""

    def _open(self) -> None:
        """Create the codec for a run."""
        raise NotImplementedError

    def _close(self) -> None:
        """Drop the codec at the end of a run (a thread may still hold it; it is not reused)."""
        raise NotImplementedError

    def _encode(self, index: int, keyframe: bool) -> list[tuple[Packet, bool]]:
        """Render and encode frame ``index``; the packets, each with its keyframe flag."""
        raise NotImplementedError


class SyntheticVideoEncoder(SharedEncoder):
    """The :class:`SyntheticVideoTrack` pattern, encoded once to VP8 with libvpx.

    Keyframes come on request (:meth:`request_keyframe`, rate-limited to one per
    ``min_keyframe_gap`` seconds; a request inside that gap is deferred, not lost), when a track
    subscribes, and every ``keyframe_interval`` seconds as a safety net (None: only on request).
    """

    def __init__(
        self,
        width: int = 640,
        height: int = 360,
        fps: float = 15.0,
        *,
        bitrate: int = DEFAULT_VIDEO_BITRATE,
        keyframe_interval: float | None = DEFAULT_KEYFRAME_INTERVAL,
        min_keyframe_gap: float = DEFAULT_MIN_KEYFRAME_GAP,
        queue_size: int | None = None,
    ) -> None:
        if not 50_000 <= bitrate <= 20_000_000:
            raise MediaSourceError(
                f"video bitrate {bitrate} bps is invalid: use 50000 to 20000000 (e.g. 500000 for 640x360)"
            )
        if keyframe_interval is not None and keyframe_interval <= 0:
            raise MediaSourceError(
                f"keyframe interval {keyframe_interval} s is invalid: use a positive number or none"
            )
        if min_keyframe_gap < 0:
            raise MediaSourceError(f"minimum keyframe gap {min_keyframe_gap} s is invalid: use 0 or more")
        self._source = SyntheticVideoTrack(width, height, fps)  # checks the size and rate
        super().__init__(
            "video",
            "video/VP8",
            f"shared VP8 {width}x{height}@{fps:g}",
            float(fps),
            queue_size=queue_size or max(2, math.ceil(fps * DEFAULT_QUEUE_SECONDS)),
            offload=True,
        )
        self.width = width
        self.height = height
        self.bitrate = bitrate
        self.keyframe_interval = keyframe_interval
        self.min_keyframe_gap = min_keyframe_gap
        self.keyframes = 0
        """Keyframes produced, for any reason."""
        self._codec: av.VideoCodecContext | None = None
        self._keyframe_pending = False
        self._last_keyframe = -math.inf  # monotonic time of the last keyframe

    def request_keyframe(self) -> None:
        """Make the next frame a keyframe, or the first one ``min_keyframe_gap`` after the last."""
        super().request_keyframe()
        self._keyframe_pending = True

    def _want_keyframe(self) -> bool:
        since = time.monotonic() - self._last_keyframe
        if self._keyframe_pending and since >= self.min_keyframe_gap:
            return True
        return self.keyframe_interval is not None and since >= self.keyframe_interval

    def _published_keyframe(self, keyframe: bool) -> None:
        if keyframe:
            self.keyframes += 1
            self._keyframe_pending = False
            self._last_keyframe = time.monotonic()

    def _open(self) -> None:
        codec = av.CodecContext.create("libvpx", "w")
        assert isinstance(codec, av.VideoCodecContext)
        codec.width, codec.height, codec.pix_fmt = self.width, self.height, "yuv420p"
        codec.time_base = VIDEO_TIME_BASE
        codec.framerate = fractions.Fraction(self.rate).limit_denominator(1001)
        codec.bit_rate = self.bitrate
        codec.gop_size = 100_000  # keyframes only when asked: see _want_keyframe
        codec.qmin, codec.qmax = 2, 56
        # aiortc's own libvpx settings (codecs/vpx.py): real-time CBR with a 1 s buffer.
        rate = str(self.bitrate)
        codec.options = {
            "bufsize": rate,
            "cpu-used": "-6",
            "deadline": "realtime",
            "lag-in-frames": "0",
            "minrate": rate,
            "maxrate": rate,
            "noise-sensitivity": "4",
            "overshoot-pct": "15",
            "partitions": "0",
            "static-thresh": "1",
            "undershoot-pct": "100",
        }
        codec.thread_count = 1
        self._codec = codec

    def _close(self) -> None:
        self._codec = None

    def _encode(self, index: int, keyframe: bool) -> list[tuple[Packet, bool]]:
        codec = self._codec
        assert codec is not None
        frame = self._source.make_frame(index)
        if keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        pts = frame.pts
        out = []
        for packet in codec.encode(frame):
            packet.pts = packet.dts = pts
            packet.time_base = VIDEO_TIME_BASE
            out.append((packet, bool(packet.is_keyframe)))
        return out


class ToneAudioEncoder(SharedEncoder):
    """The :class:`ToneAudioTrack` tone (or silence), encoded once to 20 ms Opus packets.

    Every Opus packet decodes on its own, so keyframe requests are counted and ignored.
    """

    def __init__(
        self,
        tone_hz: float | None = 440.0,
        *,
        bitrate: int = DEFAULT_AUDIO_BITRATE,
        queue_size: int | None = None,
    ) -> None:
        if not 6_000 <= bitrate <= 510_000:
            raise MediaSourceError(f"audio bitrate {bitrate} bps is invalid: use 6000 to 510000 (e.g. 32000)")
        self._source = ToneAudioTrack(frequency=tone_hz, sample_rate=AUDIO_RATE, ptime_ms=20)
        what = "silence" if tone_hz is None else f"{tone_hz:g} Hz tone"
        rate = AUDIO_RATE / OPUS_SAMPLES
        super().__init__(
            "audio",
            "audio/opus",
            f"shared Opus {what}",
            rate,
            queue_size=queue_size or math.ceil(rate * DEFAULT_QUEUE_SECONDS),
            offload=False,  # 20 ms of mono Opus encodes in well under a millisecond
        )
        self.tone_hz = tone_hz
        self.bitrate = bitrate
        self._codec: av.AudioCodecContext | None = None

    def _on_subscribe(self, kind: Kind) -> None:
        pass  # every packet is a fresh start

    def _open(self) -> None:
        codec = av.CodecContext.create("libopus", "w")
        assert isinstance(codec, av.AudioCodecContext)
        codec.sample_rate = AUDIO_RATE
        codec.format = "s16"
        codec.layout = "mono"
        codec.bit_rate = self.bitrate
        codec.time_base = AUDIO_TIME_BASE
        codec.options = {"application": "voip"}
        self._codec = codec

    def _close(self) -> None:
        self._codec = None

    def _encode(self, index: int, keyframe: bool) -> list[tuple[Packet, bool]]:
        codec = self._codec
        assert codec is not None
        frame = self._source._render(index)  # same package: the tone generator, unpaced
        out = []
        # libopus returns one packet per 20 ms frame (delayed by its 6.5 ms look-ahead, with a
        # negative pts): stamp it with the frame's own time, so timestamps follow the schedule.
        for packet in codec.encode(frame):
            packet.pts = packet.dts = index * OPUS_SAMPLES
            packet.time_base = AUDIO_TIME_BASE
            out.append((packet, True))
        return out


class SharedMedia:
    """The process-wide registry of shared sources: one per distinct source, made on demand.

    The agent creates one per process and passes it to the bots; each bot asks for tracks by
    its ``MediaSpec``. Bots with equal specs share one encoder (or one file reader). Sources
    run only while some track is sending, and :meth:`aclose` ends them all.

    ``video_bitrate``, ``audio_bitrate`` and the keyframe settings apply to the synthetic
    encoders; files are sent as they are encoded.
    """

    def __init__(
        self,
        *,
        video_bitrate: int = DEFAULT_VIDEO_BITRATE,
        audio_bitrate: int = DEFAULT_AUDIO_BITRATE,
        keyframe_interval: float | None = DEFAULT_KEYFRAME_INTERVAL,
        min_keyframe_gap: float = DEFAULT_MIN_KEYFRAME_GAP,
    ) -> None:
        self.video_bitrate = video_bitrate
        self.audio_bitrate = audio_bitrate
        self.keyframe_interval = keyframe_interval
        self.min_keyframe_gap = min_keyframe_gap
        self._encoders: dict[tuple[object, ...], SharedEncoder] = {}
        self._files: dict[tuple[str, bool], EncodedFileSource] = {}
        self._closed = False

    @property
    def streams(self) -> list[PacketStream]:
        """Every source made so far (for metrics: ``frames_encoded``, ``subscribers``...)."""
        out: list[PacketStream] = list(self._encoders.values())
        for source in self._files.values():
            out.extend(s for s in (source.video, source.audio) if s is not None)
        return out

    def video_track(self, spec: MediaSpec) -> PacketTrack | None:
        """A new video track for ``spec``; None for a file without video."""
        if spec.kind == "file":
            return self._file(spec).video_track()
        self._check_open()
        key: tuple[object, ...] = ("video", spec.width, spec.height, float(spec.fps))
        encoder = self._encoders.get(key)
        if encoder is None:
            encoder = SyntheticVideoEncoder(
                spec.width,
                spec.height,
                spec.fps,
                bitrate=self.video_bitrate,
                keyframe_interval=self.keyframe_interval,
                min_keyframe_gap=self.min_keyframe_gap,
            )
            self._encoders[key] = encoder
        return encoder.track()

    def audio_track(self, spec: MediaSpec) -> PacketTrack | None:
        """A new audio track for ``spec``; None for a file without audio."""
        if spec.kind == "file":
            return self._file(spec).audio_track()
        self._check_open()
        key: tuple[object, ...] = ("audio", spec.tone_hz)
        encoder = self._encoders.get(key)
        if encoder is None:
            encoder = ToneAudioEncoder(spec.tone_hz, bitrate=self.audio_bitrate)
            self._encoders[key] = encoder
        return encoder.track()

    def tracks(
        self, spec: MediaSpec, *, audio: bool, video: bool
    ) -> tuple[PacketTrack | None, PacketTrack | None]:
        """``(audio, video)`` tracks, with the same rules as :func:`bot.media.open_media`."""
        if spec.kind == "file" and (audio or video):
            source = self._file(spec)
            if not ((audio and source.audio) or (video and source.video)):
                has = "audio" if source.audio else "video"
                asked = "audio" if audio else "video"
                raise MediaSourceError(
                    f"media file {spec.file!r} has no {asked} stream, only {has}: "
                    f"use a file with {asked} or publish {has}"
                )
        return (
            self.audio_track(spec) if audio else None,
            self.video_track(spec) if video else None,
        )

    def _file(self, spec: MediaSpec) -> EncodedFileSource:
        self._check_open()
        assert spec.file is not None  # MediaSpec checks it
        key = (os.path.realpath(spec.file), spec.loop)
        source = self._files.get(key)
        if source is None:
            source = EncodedFileSource(spec.file, loop=spec.loop)
            self._files[key] = source
        return source

    def _check_open(self) -> None:
        if self._closed:
            raise MediaSourceError("shared media is closed: create tracks before the agent shuts down")

    async def aclose(self) -> None:
        """End every track handed out and stop every source. Idempotent."""
        self._closed = True
        for encoder in self._encoders.values():
            await encoder.aclose()
        for source in self._files.values():
            await source.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
