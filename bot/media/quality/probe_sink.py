"""The quality probe's sink: arrival readings always, decoded samples only where asked.

It needs no frame (``needs_frames`` is False), so a subscribe leg counts on the lean intake and
calls :meth:`ProbeSink.tally`: what is left to know is *when* frames arrive, which is all the
cheap signals (freeze, frame rate, audio gap) need. Decoding does not need every frame either:
the lean intake asks :meth:`ProbeSink.wants_sample` as a frame starts and hands a wanted one,
reassembled, to :meth:`ProbeSink.sample`. Where the lean intake is off (another codec, aiortc's
internals moved) the leg's tap calls :meth:`ProbeSink.write` with every frame instead.

With ``decode_every_s``, one video keyframe per interval is decoded on a shared worker thread
(a VP8 delta frame cannot be decoded alone): a keyframe that arrives is used when a sample is
due, else one is asked for (a PLI, at most once a second); the publisher then sends one extra
keyframe per interval, the price of a sampled picture. With ``decode_audio`` every Opus packet is
decoded inline (tens of microseconds) for its level. :attr:`Reading.decode_s` is what decoding
and measuring cost, so the cost per stream can be reported rather than guessed.
"""

from __future__ import annotations

import collections
import concurrent.futures
import copy
import fractions
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np
import structlog

from ..bitstream import codec_of, is_keyframe
from ..shared.fanout import Kind
from ..sinks.base import DiscardSink
from .measure import dbfs_of_power, luma_thumbnail, mean_square, picture_difference

log = structlog.get_logger(__name__)

KEYFRAME_ASK_INTERVAL_S = 1.0
"""Ask again for a keyframe (a sample is due, none came) at most this often."""

LEVEL_PACKETS = 25
"""The audio level is the RMS of the last this many packets (0.5 s of 20 ms Opus)."""

_DECODERS = {"vp8": "vp8", "h264": "h264"}
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _decode_pool() -> concurrent.futures.ThreadPoolExecutor:
    """One thread for every probe of the process: samples are rare, a queue is fine."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="quality-decode")
        return _pool


@dataclass(frozen=True)
class Picture:
    """One decoded sample of a video stream."""

    at: float
    """When its frame arrived (monotonic seconds)."""
    luma: float
    """Mean luma, 0..255 (video-range black is 16)."""
    width: int
    height: int
    difference: float | None
    """Mean absolute luma difference to the previous sample (None: the first sample)."""


@dataclass
class Reading:
    """What a probe sink saw so far (:meth:`ProbeSink.reading` hands out a copy)."""

    video_frames: int = 0
    audio_frames: int = 0
    keyframes: int = 0
    last_video_at: float | None = None
    last_audio_at: float | None = None
    picture: Picture | None = None
    pictures: int = 0
    """Video samples decoded."""
    level_dbfs: float | None = None
    """RMS level of the last ``LEVEL_PACKETS`` decoded audio packets (None: audio not decoded)."""
    last_loud_at: float | None = None
    """When a decoded audio packet was last at or above ``silence_dbfs``."""
    audio_decoded: int = 0
    decode_errors: int = 0
    decode_s: float = 0.0
    """Seconds spent decoding and measuring, both kinds together."""
    keyframes_asked: int = 0


class ProbeSink(DiscardSink):
    """Counts like :class:`~bot.media.DiscardSink` and keeps what the quality verdicts need."""

    def __init__(
        self,
        *,
        decode_every_s: float | None = None,
        decode_audio: bool = False,
        silence_dbfs: float = -60.0,
        request_keyframe: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._every = decode_every_s
        self._decode_audio = decode_audio
        self._silence_power = 10 ** (silence_dbfs / 10)
        self._request_keyframe = request_keyframe
        self._clock = clock
        self._reading = Reading()
        self._next_sample_at = -float("inf")
        self._asked_at = -float("inf")
        self._sampling = False  # a video sample is on the worker thread
        self._thumb: np.ndarray | None = None  # only the worker thread
        self._video_decoder: tuple[str, av.VideoCodecContext] | None = None  # only the worker thread
        self._audio_decoder: av.AudioCodecContext | None = None
        self._powers: collections.deque[float] = collections.deque(maxlen=LEVEL_PACKETS)

    @property
    def samples(self) -> bool:
        """Whether this sink decodes anything (else the lean intake need not ask it per frame)."""
        return self._every is not None or self._decode_audio

    def reading(self) -> Reading:
        """A consistent copy, taken under the sink's lock."""
        with self._lock:
            return copy.copy(self._reading)

    # -- arrivals ----------------------------------------------------------------------------

    def tally(self, kind: Kind, size: int, keyframe: bool) -> None:
        counts = self._counts.get(kind)
        if counts is None:
            return
        now = self._clock()
        ask = None
        with self._lock:  # DiscardSink's counts and the reading under one lock: every frame pays it
            counts.frames += 1
            counts.bytes += size
            counts.keyframes += keyframe
            if self._closed:
                counts.dropped += 1
            r = self._reading
            if kind == "video":
                r.video_frames += 1
                r.keyframes += keyframe
                r.last_video_at = now
                ask = self._ask_keyframe(now, keyframe)
            elif kind == "audio":
                r.audio_frames += 1
                r.last_audio_at = now
        if ask is not None:
            self._call(ask)

    def _ask_keyframe(self, now: float, keyframe: bool) -> Callable[[], None] | None:
        """Under the lock: the keyframe request to make when a sample is due and none is coming."""
        if self._every is None or keyframe or self._sampling or now < self._next_sample_at:
            return None
        if now - self._asked_at < KEYFRAME_ASK_INTERVAL_S or self._request_keyframe is None:
            return None
        self._asked_at = now
        self._reading.keyframes_asked += 1
        return self._request_keyframe

    @staticmethod
    def _call(ask: Callable[[], None]) -> None:
        try:
            ask()
        except Exception as exc:
            log.error("keyframe_request_failed", error=str(exc), exc_info=exc)

    def wants_sample(self, kind: Kind) -> bool:
        """Whether the frame that starts now should be handed to :meth:`sample` (video: the
        lean intake asks only at a keyframe; audio: every packet when decoding audio)."""
        if kind == "audio":
            return self._decode_audio and not self._closed
        return self._every is not None and not self._sampling and self._clock() >= self._next_sample_at

    def sample(self, kind: Kind, data: bytes, keyframe: bool) -> None:
        """A whole frame :meth:`wants_sample` asked for (VP8 or Opus, as the lean intake counts)."""
        if self._closed or not data:
            return
        if kind == "video" and self._every is not None:
            self._video("vp8", data, keyframe)
        elif kind == "audio" and self._decode_audio:
            self._audio(data)

    def write(
        self, kind: Kind, codec: str, data: bytes, timestamp: int, clock_rate: int, keyframe: bool
    ) -> None:
        name = codec_of(codec)
        key = kind == "video" and name is not None and is_keyframe(name, data)
        self.tally(kind, len(data), key)
        if self._closed or not data or name is None:
            return
        if kind == "video" and self._every is not None:
            self._video(name, data, key)
        elif kind == "audio" and self._decode_audio and name == "opus":
            self._audio(data)

    # -- video samples -----------------------------------------------------------------------

    def _video(self, codec: str, data: bytes, keyframe: bool) -> None:
        """A keyframe when a sample is due goes to the worker (tally asked for one if needed)."""
        assert self._every is not None
        now = self._clock()
        with self._lock:
            if not keyframe or self._sampling or now < self._next_sample_at:
                return
            self._sampling = True
            self._next_sample_at = now + self._every
        try:
            _decode_pool().submit(self._sample, codec, data, now)
        except RuntimeError:  # the pool is shutting down with the process
            with self._lock:
                self._sampling = False

    def _sample(self, codec: str, data: bytes, at: float) -> None:
        """On the worker thread: decode one keyframe, measure it."""
        started = time.perf_counter()
        picture: Picture | None = None
        failed = False
        try:
            if self._video_decoder is None or self._video_decoder[0] != codec:
                ctx = av.CodecContext.create(_DECODERS.get(codec, codec), "r")
                assert isinstance(ctx, av.VideoCodecContext)
                ctx.thread_count = 1
                self._video_decoder = (codec, ctx)
            frames = self._video_decoder[1].decode(av.Packet(data))
            if frames:
                frame = frames[-1]
                luma, thumb = luma_thumbnail(frame)
                diff = None if self._thumb is None else picture_difference(self._thumb, thumb)
                self._thumb = thumb
                picture = Picture(at, luma, frame.width, frame.height, diff)
        except Exception as exc:  # a corrupt keyframe: count it, never raise on the worker
            failed = True
            self._video_decoder = None
            log.debug("quality_decode_failed", kind="video", error=str(exc))
        spent = time.perf_counter() - started
        with self._lock:
            self._sampling = False
            r = self._reading
            r.picture = picture or r.picture
            r.pictures += picture is not None
            r.decode_errors += failed
            r.decode_s += spent

    # -- audio level -------------------------------------------------------------------------

    def _audio(self, data: bytes) -> None:
        started = time.perf_counter()
        now = self._clock()
        failed = False
        powers: list[float] = []
        try:
            if self._audio_decoder is None:
                ctx = av.CodecContext.create("opus", "r")
                assert isinstance(ctx, av.AudioCodecContext)
                ctx.sample_rate = 48000
                ctx.layout = "mono"  # a level needs one channel: Opus downmixes, cheaper
                self._audio_decoder = ctx
            packet = av.Packet(data)
            packet.time_base = fractions.Fraction(1, 48000)
            powers = [mean_square(f) for f in self._audio_decoder.decode(packet)]
        except Exception as exc:
            failed = True
            self._audio_decoder = None
            log.debug("quality_decode_failed", kind="audio", error=str(exc))
        spent = time.perf_counter() - started
        with self._lock:
            self._powers.extend(powers)
            r = self._reading
            loud = any(p >= self._silence_power for p in powers)
            if self._powers:
                r.level_dbfs = dbfs_of_power(sum(self._powers) / len(self._powers))
            if loud:
                r.last_loud_at = now
            r.audio_decoded += len(powers)
            r.decode_errors += failed
            r.decode_s += spent
