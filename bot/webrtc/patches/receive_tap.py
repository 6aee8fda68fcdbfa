"""Patch ``receive_tap``: a receiver's reassembled encoded frames, taken before any decoding.

Mirrors aiortc 1.16 ``RTCRtpReceiver._handle_rtp_packet`` (which puts ``(codec, frame)`` on the
receiver's ``__decoder_queue``) and ``decoder_worker`` (which ends when ``get`` returns None).
The queue of one receiver is replaced by :class:`FrameTap` before it starts: ``put`` hands the
frame to a callback on the event loop, ``get`` says "stop" at once, so aiortc's decoder thread
ends having decoded nothing and nothing piles up in its unbounded track queue.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

from .. import _internals as n


class FrameTap(queue.Queue[Any]):
    """Stands in for one ``RTCRtpReceiver``'s decoder queue (see the module docstring)."""

    def __init__(self, on_frame: Callable[[Any, Any], None]) -> None:
        super().__init__()
        self._on_frame = on_frame

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:  # the receiver stopping: its decoder thread has long ended
            return
        codec, frame = item
        self._on_frame(codec, frame)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        return None


def probe(receiver: Any) -> bool:
    """Whether this receiver has a decoder queue to stand in for."""
    return isinstance(getattr(receiver, n.RECEIVER_DECODER_QUEUE, None), queue.Queue)


class Handle:
    """Puts the receiver's own decoder queue back (before it starts)."""

    def __init__(self, receiver: Any, saved: Any) -> None:
        self._receiver = receiver
        self._saved = saved

    def uninstall(self) -> None:
        setattr(self._receiver, n.RECEIVER_DECODER_QUEUE, self._saved)


def install(receiver: Any, on_frame: Callable[[Any, Any], None]) -> Handle | None:
    """Tap ``receiver``'s encoded frames into ``on_frame(codec, frame)``; None if :func:`probe`
    fails (the caller then lets aiortc decode)."""
    if not probe(receiver):
        return None
    handle = Handle(receiver, getattr(receiver, n.RECEIVER_DECODER_QUEUE))
    setattr(receiver, n.RECEIVER_DECODER_QUEUE, FrameTap(on_frame))
    return handle


def decoder_thread_alive(receiver: Any) -> bool:
    """Whether aiortc's decoder thread for this receiver runs."""
    thread = getattr(receiver, n.RECEIVER_DECODER_THREAD, None)
    return bool(thread is not None and thread.is_alive())


def jitter_buffer(receiver: Any) -> Any:
    """The receiver's jitter buffer (the server wraps it to keep frames before the decoder)."""
    return getattr(receiver, n.RECEIVER_JITTER_BUFFER, None)


def set_jitter_buffer(receiver: Any, buffer: Any) -> None:
    setattr(receiver, n.RECEIVER_JITTER_BUFFER, buffer)


def fresh_jitter_buffer(buffer: Any) -> Any:
    """An empty jitter buffer of the same shape as aiortc 1.16's ``JitterBuffer`` ``buffer``."""
    prefetch = getattr(buffer, n.JITTER_PREFETCH, 0)
    video = getattr(buffer, n.JITTER_IS_VIDEO, False)
    return type(buffer)(capacity=buffer.capacity, prefetch=prefetch, is_video=video)
