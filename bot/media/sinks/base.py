"""What every sink for received media shares: the :class:`EncodedSink` contract and the counters.

A receiving track that nobody looks at is never decoded. aiortc decodes every received frame on
a thread of its own unless the receiver is tapped before it starts (see ``bot/server/media.py``);
the tap hands each reassembled frame (``JitterFrame``: ``data``, RTP ``timestamp``) to a sink.
``write`` may be called from the event loop or from a receiver thread: sinks lock, and never
raise from ``write`` (an exception there would break the receiver's RTP handling), they count
and log instead. :class:`DiscardSink`, the sink that keeps nothing, lives here too.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

import structlog

from ..shared.fanout import Kind

log = structlog.get_logger(__name__)

KINDS: tuple[Kind, ...] = ("audio", "video")

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
            log.error("keyframe_request_failed", error=str(exc), exc_info=exc)


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
    lean intake (RTP counted before reassembly) and call :meth:`tally` instead of :meth:`write`, with
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
