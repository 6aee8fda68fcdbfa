"""Encoded packets from one source, fanned out to many aiortc tracks.

A :class:`PacketStream` produces ``av.Packet`` objects once, paced in real time by one task, and
hands each to every subscribed :class:`PacketTrack`. A track whose ``recv()`` returns an
``av.Packet`` makes ``RTCRtpSender`` skip encoding: it calls the negotiated codec's ``pack()``,
which only splits the bytes into RTP payloads. What ``pack()`` needs from a packet:

- the payload: a VP8 frame as libvpx writes it; H.264 as Annex-B NAL units (start codes); one
  Opus packet (any frame size); raw G.711 bytes;
- ``pts`` and ``time_base``: the RTP timestamp is ``int(pts * time_base * clock_rate)`` (90 kHz
  for video, 48 kHz for Opus, 8 kHz for G.711) plus the sender's random origin, so streams here
  use exactly those clocks as ``time_base`` and timestamps never go backwards;
- nothing else: ``RTCRtpSender`` sends a packet as soon as ``recv()`` returns it, so pacing is
  this module's job, and it does not look at keyframe flags or answer PLI/FIR itself.

The sender picks the packer from the *negotiated* codec, not from the packet: the layer that
negotiates must make the track's :attr:`PacketTrack.mime_type` the first codec of its
transceiver (``RTCRtpTransceiver.setCodecPreferences``), or it sends VP8 bytes as H.264.

Packets are shared, not copied: every subscriber gets the same ``av.Packet`` object, which
aiortc only reads. Subscribers are held weakly, so a track dropped without ``stop()`` does not
keep a source running.

**Direct sinks.** A track costs its consumer a task wake-up, a queue and aiortc's per-packet
sender loop for every packet. A :class:`PacketSink` (``bot.rtc`` has one that writes RTP
straight to a sender's transport) is instead handed each packet synchronously, in the
producing task, right after it is made: :meth:`PacketStream.attach` / :meth:`~PacketStream.detach`.
A sink has no queue, so it never falls behind; it must not block.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol, Self, TypeAlias

import av
import av.stream
import structlog
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..errors import MediaSourceError

log = structlog.get_logger(__name__)

Kind = Literal["audio", "video"]

if TYPE_CHECKING:
    Packet: TypeAlias = av.Packet[av.stream.Stream]
else:
    Packet = av.Packet  # not subscriptable at run time

DEFAULT_QUEUE_SECONDS = 1.0
"""How far a subscriber may fall behind before it drops packets."""


class PacketSink(Protocol):
    """Takes every packet of a stream as it is produced (see "Direct sinks" above)."""

    kind: Kind

    def deliver(self, packet: Packet, keyframe: bool) -> None:
        """One packet, in the producing task; must return at once and should not raise."""
        ...

    def failed(self, error: BaseException) -> None:
        """``deliver`` raised ``error``: the sink has been detached (the stream and its other
        subscribers go on)."""
        ...


class QueuedPacketTrack(MediaStreamTrack):
    """A track whose ``recv()`` returns ``av.Packet`` from a bounded queue its source pushes to.

    The queue logic every packet subscriber shares (:class:`PacketTrack` here, the server's
    ``ForwardTrack``): the track joins its source on its first ``recv()`` and leaves it on
    ``stop()``. A video track starts at a keyframe: packets before the first keyframe are
    skipped. A consumer that falls ``queue_size`` packets behind drops them and never slows the
    source: audio drops the oldest packet; video drops its whole queue (one missing frame breaks
    every frame up to the next keyframe) and, unless the new packet is a keyframe, skips until
    the next one and asks the source for it.

    Subclasses implement the hooks: :meth:`_join`, :meth:`_leave`, :meth:`_sent` (per packet
    returned), :meth:`_skip`, :meth:`_drop` and :meth:`_request_keyframe`.
    """

    def __init__(self, kind: Kind, queue_size: int) -> None:
        super().__init__()
        self.kind = kind
        self._queue: collections.deque[Packet] = collections.deque()
        self._queue_size = queue_size
        self._ready = asyncio.Event()
        self._joined = False
        self._ended = False
        self._awaiting_keyframe = kind == "video"

    async def recv(self) -> Packet:
        """The next packet, when the source produces it."""
        if self.readyState != "live":
            raise MediaStreamError
        if not self._joined:
            self._joined = True
            self._join()
        while not self._queue:
            if self._ended:
                self.stop()
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
            if self.readyState != "live":
                raise MediaStreamError
        packet = self._queue.popleft()
        self._sent(packet)
        return packet

    def stop(self) -> None:
        """End the track and leave the source. Idempotent."""
        super().stop()
        self._queue.clear()
        self._leave()
        self._ready.set()

    def _push(self, packet: Packet, keyframe: bool) -> None:
        """Called by the source for every packet it produces."""
        if self._awaiting_keyframe:
            if not keyframe:
                self._skip()
                return
            self._awaiting_keyframe = False
        if len(self._queue) >= self._queue_size:
            if self.kind == "video":
                # Dropping any one video packet breaks every frame up to the next keyframe:
                # drop them all, and resume cleanly at a keyframe.
                self._drop(len(self._queue))
                self._queue.clear()
                if not keyframe:
                    self._skip()
                    self._awaiting_keyframe = True
                    self._request_keyframe()
                    return
            else:
                self._queue.popleft()
                self._drop(1)
        self._queue.append(packet)
        self._ready.set()

    def _end(self) -> None:
        """The source has ended: ``recv()`` raises once the queue is empty."""
        self._ended = True
        self._ready.set()

    # --- for subclasses ---------------------------------------------------------------------

    def _join(self) -> None:
        """Hook: subscribe to the source (first ``recv()``)."""
        raise NotImplementedError

    def _leave(self) -> None:
        """Hook: unsubscribe from the source (``stop()``; may run more than once)."""
        raise NotImplementedError

    def _sent(self, packet: Packet) -> None:
        """Hook: ``packet`` is being handed to the consumer."""
        raise NotImplementedError

    def _skip(self) -> None:
        """Hook: one video packet passed over while waiting for a keyframe."""
        raise NotImplementedError

    def _drop(self, count: int) -> None:
        """Hook: ``count`` packets lost because the consumer fell behind."""
        raise NotImplementedError

    def _request_keyframe(self) -> None:
        """Hook: ask the source for a keyframe (video fell behind)."""
        raise NotImplementedError


class PacketTrack(QueuedPacketTrack):
    """One subscriber of a :class:`PacketStream`: a track whose ``recv()`` returns ``av.Packet``.

    The track subscribes on its first ``recv()`` (so a track not yet sending costs nothing) and
    unsubscribes on ``stop()``. A video track starts at a keyframe: packets before the first
    keyframe after subscribing are skipped, and the source is asked for one. Its queue is
    bounded: a consumer that falls ``queue_size`` packets behind drops them (counted in
    ``packets_dropped``) and never slows the source or the other subscribers; video then waits
    for the next keyframe, so the receiver never gets a stream with holes in it.
    """

    def __init__(self, stream: PacketStream, queue_size: int) -> None:
        super().__init__(stream.kind, queue_size)
        self.packets_sent = 0
        """Packets handed to the consumer."""
        self.packets_dropped = 0
        """Packets lost because the consumer fell behind."""
        self.packets_skipped = 0
        """Video packets passed over while waiting for a keyframe (at the start, after drops)."""
        self._stream = stream

    @property
    def mime_type(self) -> str:
        """The codec the packets are in, as aiortc names it (``video/VP8``, ``audio/opus``)."""
        return self._stream.mime_type

    @property
    def stream(self) -> PacketStream:
        """The source this track subscribes to."""
        return self._stream

    def request_keyframe(self) -> None:
        """Ask the source for a keyframe; call it when the peer sends PLI or FIR."""
        self._stream.request_keyframe()

    def _join(self) -> None:
        self._stream._subscribe(self)

    def _leave(self) -> None:
        self._stream._unsubscribe(self)

    def _sent(self, packet: Packet) -> None:
        self.packets_sent += 1

    def _skip(self) -> None:
        self.packets_skipped += 1

    def _drop(self, count: int) -> None:
        self.packets_dropped += count

    def _request_keyframe(self) -> None:
        self._stream.request_keyframe()


class PacketStream:
    """A source of encoded packets of one kind and codec, shared by any number of tracks.

    Subclasses implement :meth:`_run`, which produces packets in real time and hands each to
    :meth:`_publish` for as long as :meth:`_has_subscribers` is true. The stream starts that task
    when a track subscribes and the task returns once the last one has left, so an idle source
    costs nothing. A failing task is logged, kept in ``error`` and ends every subscriber (their
    senders stop with it); the next subscriber starts it again.
    """

    def __init__(self, kind: Kind, mime_type: str, name: str, queue_size: int) -> None:
        if queue_size < 1:
            raise MediaSourceError(f"queue size {queue_size} of {name} is invalid: use at least 1 packet")
        self.kind: Kind = kind
        self.mime_type = mime_type
        """The aiortc codec name of the packets, e.g. ``video/VP8``."""
        self.name = name
        self.queue_size = queue_size
        self.packets_published = 0
        self.keyframe_requests = 0
        self.runs = 0
        """How many times the producing task has started."""
        self.error: MediaSourceError | None = None
        """The last failure of the producing task, if any."""
        self._subscribers: weakref.WeakSet[PacketTrack] = weakref.WeakSet()
        self._sinks: list[PacketSink] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def track(self) -> PacketTrack:
        """A new subscriber track; it starts receiving on its first ``recv()``."""
        if self._closed:
            raise MediaSourceError(f"{self.name} is closed: create tracks before closing it")
        return PacketTrack(self, self.queue_size)

    @property
    def subscribers(self) -> int:
        """How many tracks and sinks are subscribed now."""
        return len(self._subscribers) + len(self._sinks)

    def attach(self, sink: PacketSink) -> None:
        """Hand every packet from now on to ``sink`` (starting the producing task if needed)."""
        if self._closed:
            raise MediaSourceError(f"{self.name} is closed: attach sinks before closing it")
        if sink not in self._sinks:
            self._sinks.append(sink)
            self._started(self.kind)

    def detach(self, sink: PacketSink) -> None:
        """Stop handing packets to ``sink``. Idempotent."""
        with contextlib.suppress(ValueError):
            self._sinks.remove(sink)

    @property
    def running(self) -> bool:
        """Whether the producing task is running."""
        return self._task is not None

    def request_keyframe(self) -> None:
        """Ask for a keyframe soon. The base stream counts it; encoders honour it."""
        self.keyframe_requests += 1

    async def aclose(self) -> None:
        """End every subscriber and stop the task. Idempotent."""
        self._closed = True
        for track in list(self._subscribers):
            track._end()
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._task = None  # _main's finally may not have run if it never started

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- for subclasses ---------------------------------------------------------------------

    async def _run(self) -> None:
        """Produce packets while there are subscribers; return when there are none."""
        raise NotImplementedError

    def _has_subscribers(self) -> bool:
        return bool(self._subscribers) or bool(self._sinks)

    def _publish(self, packet: Packet, keyframe: bool) -> None:
        """Hand one packet to every subscriber."""
        self.packets_published += 1
        for track in self._subscribers:
            track._push(packet, keyframe)
        broken: list[tuple[PacketSink, Exception]] = []
        for sink in self._sinks:
            try:
                sink.deliver(packet, keyframe)
            except Exception as exc:  # one bot's sender must not stop everybody's media
                broken.append((sink, exc))
        for sink, error in broken:
            log.error("packet_sink_failed", sink=type(sink).__name__, error=str(error), exc_info=error)
            self.detach(sink)
            sink.failed(error)

    def _end_subscribers(self) -> None:
        """The stream has ended (a file played once): end every current subscriber (a sink
        just stops getting packets)."""
        for track in list(self._subscribers):
            track._end()
        self._subscribers.clear()
        self._sinks.clear()

    def _on_subscribe(self, kind: Kind) -> None:
        """Hook: a track or sink has just subscribed."""
        if kind == "video":
            self.request_keyframe()

    def _on_idle(self) -> None:
        """Hook: the task has returned (no subscribers left, or the stream ended)."""

    # --- for PacketTrack ----------------------------------------------------------------------

    def _subscribe(self, track: PacketTrack) -> None:
        if self._closed:
            track._end()
            return
        self._subscribers.add(track)
        self._started(self.kind)

    def _started(self, kind: Kind) -> None:
        self._on_subscribe(kind)
        if self._task is None:
            self.runs += 1
            self._task = asyncio.get_running_loop().create_task(self._main(), name=self.name)

    def _unsubscribe(self, track: PacketTrack) -> None:
        # The task notices on its next packet and returns; nothing to wake here.
        self._subscribers.discard(track)

    async def _main(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = (
                exc if isinstance(exc, MediaSourceError) else MediaSourceError(f"{self.name} failed: {exc}")
            )
            error.__cause__ = exc
            self.error = error
            log.error("shared_media_failed", stream=self.name, error=str(error), exc_info=exc)
            self._end_subscribers()
        finally:
            self._task = None
            self._on_idle()


class Schedule:
    """When each packet of a stream is due on the monotonic clock, with catch-up after stalls.

    ``due(t)`` is the wall time of media time ``t`` (seconds). If the event loop stalls and a
    packet is more than ``max_lag`` late, :meth:`wait` reports how late so the caller can skip
    ahead (live sources) or :meth:`shift` the schedule (files), instead of bursting a backlog.
    """

    def __init__(self, origin: float, max_lag: float = 0.5) -> None:
        self.origin = origin
        self.max_lag = max_lag

    async def wait(self, media_time: float) -> float:
        """Sleep until ``media_time`` is due; return how late it was when we woke (seconds)."""
        delay = self.origin + media_time - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
            return 0.0
        return -delay

    def shift(self, seconds: float) -> None:
        """Move the whole schedule later."""
        self.origin += seconds
