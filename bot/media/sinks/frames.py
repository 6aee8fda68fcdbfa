"""Decoding received media for a callback: the only sink that decodes."""

from __future__ import annotations

import fractions
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
import av.audio.frame
import av.video.frame
import structlog

from ..bitstream import codec_of, is_keyframe
from ..errors import MediaSourceError
from ..shared.fanout import Kind, Packet
from .base import _Counts, _KeyframeRequests, _Sink
from .mux import NS, Timeline, file_pts

log = structlog.get_logger(__name__)

Frame = av.video.frame.VideoFrame | av.audio.frame.AudioFrame

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
            raise MediaSourceError(f"frame sink queue size {queue_size} is invalid: use 1 or more")
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
            log.debug("frame_decode_failed", kind=work.kind, codec=work.codec, error=str(exc))
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
                log.error("frame_callback_failed", kind=kind, error=str(exc), exc_info=exc)

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
                log.warning("frame_sink_stuck", waited_s=30)
                return
        for kind, (_, ctx) in list(self._decoders.items()):
            try:
                self._deliver(kind, ctx.decode(None))
            except av.FFmpegError as exc:
                log.debug("frame_flush_failed", kind=kind, error=str(exc))
        self._decoders.clear()
