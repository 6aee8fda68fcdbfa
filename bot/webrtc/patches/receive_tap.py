"""Patch ``receive_tap``: a receiver's reassembled encoded frames, taken before any decoding.

Mirrors aiortc 1.16 ``RTCRtpReceiver._handle_rtp_packet`` (which puts ``(codec, frame)`` on the
receiver's ``__decoder_queue``) and ``decoder_worker`` (which ends when ``get`` returns None).
The queue of one receiver is replaced by :class:`FrameTap` before it starts: ``put`` hands the
frame to a callback on the event loop, ``get`` says "stop" at once, so aiortc's decoder thread
ends having decoded nothing and nothing piles up in its unbounded track queue.

Nor is that thread started: ``receive`` makes it with ``threading.Thread`` from
``aiortc.rtcrtpreceiver``'s module globals, and :func:`install` puts a ``threading`` there whose
``Thread`` runs ``decoder_worker`` inline when its queue is a :class:`FrameTap` (where the worker
returns at once, after telling the track it ended). Starting and awaiting that OS thread was
about 5% of the server's samples during joins (``bench/join_cost.py --sample``). Any other
``Thread`` is the real one; when the module no longer has those globals, the thread runs as
before (``threadless()`` is False, reported as the ``tap_threadless`` fast path).
"""

from __future__ import annotations

import queue
import threading
import types
from collections.abc import Callable
from typing import Any

from aiortc import rtcrtpreceiver

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


class _InlineWorker:
    """What a tapped receiver holds as its decoder thread: the worker ran at ``start`` and
    returned, so it is never alive and joins at once."""

    def __init__(self, target: Callable[..., None], args: tuple[Any, ...]) -> None:
        self._target = target
        self._args = args

    def start(self) -> None:
        self._target(*self._args)

    def join(self, timeout: float | None = None) -> None:
        pass

    def is_alive(self) -> bool:
        return False


def _thread(*args: Any, **kwargs: Any) -> Any:
    """``decoder_worker(loop, decoder_queue, ...)`` on a tap runs inline; anything else is a thread."""
    target, worker_args = kwargs.get("target"), kwargs.get("args", ())
    worker: Callable[..., None] | None = getattr(rtcrtpreceiver, n.RECEIVER_DECODER_WORKER, None)
    tapped = len(worker_args) > 1 and isinstance(worker_args[1], FrameTap)
    if worker is not None and target is worker and tapped:
        return _InlineWorker(kwargs["target"], worker_args)
    return threading.Thread(*args, **kwargs)


class _Threading(types.ModuleType):
    """``threading`` for ``aiortc.rtcrtpreceiver``: all of it, but ``Thread`` (:func:`_thread`)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(threading, name)


_THREADING = _Threading("threading")
_THREADING.Thread = _thread  # type: ignore[attr-defined]


def probe_threadless() -> bool:
    """Whether tapped receivers can start no decoder thread (or already do)."""
    current = getattr(rtcrtpreceiver, n.RECEIVER_THREADING, None)
    return current is _THREADING or (
        current is threading and callable(getattr(rtcrtpreceiver, n.RECEIVER_DECODER_WORKER, None))
    )


def threadless() -> bool:
    """Make tapped receivers start no decoder thread, when :func:`probe_threadless` allows."""
    if not probe_threadless():
        return False
    setattr(rtcrtpreceiver, n.RECEIVER_THREADING, _THREADING)
    return True


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
    threadless()
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
