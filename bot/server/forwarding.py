"""Forwarding encoded media: one published kind to many subscribe legs, never decoded.

A :class:`ForwardedStream` is one kind (audio or video) of one published stream. The publish
leg's receiver tap hands it every complete encoded frame the receiver reassembled (a VP8 frame
or an Opus packet, with its RTP timestamp) through :meth:`ForwardedStream.push`; the stream
wraps it once in an ``av.Packet`` (``pts`` is the RTP timestamp unwrapped and counted from the
first frame, ``time_base`` 1/90000 for video and 1/48000 for Opus: exactly the codec clocks)
and gives that same object to every :class:`ForwardTrack` attached to it. A track whose
``recv()`` returns an ``av.Packet`` makes aiortc's ``RTCRtpSender`` skip encoding: it calls
the negotiated codec's ``pack()``, which only splits the bytes into RTP payloads. With no
track attached, :meth:`~ForwardedStream.push` returns at once: the frame was received, counted
and dropped.

Each track is one subscriber's: its queue is bounded (``VIDEO_QUEUE`` frames, ``AUDIO_QUEUE``
packets) so a subscriber whose sender falls behind drops packets and never holds up the
publisher nor the other subscribers. Video starts at a keyframe; after a drop it discards the
rest of its queue and waits for the next keyframe (a stream with holes would not decode), and
asks the publisher for one. (That queue is :class:`bot.media.QueuedPacketTrack`, shared
with :mod:`bot.media.shared.fanout`, whose streams are paced by a producing task; here the receiver
pushes.)

**Keyframe requests.** aiortc ignores PLI/FIR on the packet path, so the subscribe leg
replaces its video sender's ``_send_keyframe`` (on that instance) with
:meth:`ForwardedStream.request_keyframe`, and a track asks too when it starts and after it
dropped frames. The stream passes requests to the publisher (``request``: the publish leg's
receiver sends an RTCP PLI) at most once per ``KEYFRAME_INTERVAL_S``; a request inside that
interval is held and sent when it ends, unless a keyframe went through meanwhile.

Pure of the network: ``request`` is a plain callable, so this module is tested with no peer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av

from bot.media import Kind, Packet, QueuedPacketTrack

TIME_BASES: dict[str, Fraction] = {"audio": Fraction(1, 48000), "video": Fraction(1, 90000)}
VIDEO_QUEUE = 30
"""Frames a video subscriber may fall behind (2 s at 15 fps) before it drops to a keyframe."""
AUDIO_QUEUE = 50
"""Opus packets an audio subscriber may fall behind (1 s of 20 ms packets)."""
KEYFRAME_INTERVAL_S = 0.3
"""At most one keyframe request (PLI) to the publisher per this interval."""

_TS_MOD = 1 << 32
_VP8_START_CODE = b"\x9d\x01\x2a"


def vp8_keyframe(data: bytes) -> bool:
    """Whether ``data`` is a VP8 keyframe (RFC 6386 9.1: frame tag bit 0 clear, then the
    start code). The same test as :func:`bot.media.bitstream.vp8_keyframe_size`, kept here as
    a cheap per-frame check."""
    return len(data) >= 10 and not data[0] & 1 and data[3:6] == _VP8_START_CODE


@dataclass(kw_only=True)
class Forwarded:
    """What went out to subscribers: packets are encoded frames (one VP8 frame or one Opus
    packet each) handed to a subscriber leg's sender, bytes their payload (before RTP)."""

    packets: int = 0
    bytes: int = 0
    dropped: int = 0
    """Packets a subscriber lost because it fell behind (video: whole frames)."""

    def to_json(self) -> dict[str, int]:
        return {"packets": self.packets, "bytes": self.bytes, "dropped": self.dropped}


class ForwardTrack(QueuedPacketTrack):
    """One subscriber's view of a :class:`ForwardedStream`: ``recv()`` returns ``av.Packet``.

    It attaches to its stream on its first ``recv()``: aiortc's sender first reads once the
    subscribe leg's DTLS is up, so frames never pile up for a leg that is not connected. It
    detaches on ``stop()`` (the sender stops it when the leg closes). The queue (bounded, video
    from a keyframe) is :class:`bot.media.QueuedPacketTrack`'s.
    """

    def __init__(self, stream: ForwardedStream, queue_size: int) -> None:
        super().__init__(stream.kind, queue_size)
        self.forwarded = Forwarded()
        self.skipped = 0
        """Video frames passed over while waiting for a keyframe (at the start, after drops)."""
        self._stream = stream

    @property
    def stream(self) -> ForwardedStream:
        return self._stream

    @property
    def attached(self) -> bool:
        """Whether the track is receiving (its sender has started reading)."""
        return self._joined and self.readyState == "live"

    def _join(self) -> None:
        self._stream._attach(self)

    def _leave(self) -> None:
        self._stream._detach(self)

    def _sent(self, packet: Packet) -> None:
        size = packet.size
        self.forwarded.packets += 1
        self.forwarded.bytes += size
        self._stream._count(size)

    def _skip(self) -> None:
        self.skipped += 1

    def _drop(self, count: int) -> None:
        self.forwarded.dropped += count
        self._stream.forwarded.dropped += count

    def _request_keyframe(self) -> None:
        self._stream.request_keyframe()


class ForwardedStream:
    """One kind of one published stream, forwarded to the tracks attached to it.

    ``request``: asks the publisher for a keyframe (video); ``on_forward(bytes)``: called per
    packet handed to a sender (the server's totals).
    """

    def __init__(
        self,
        kind: Kind,
        *,
        request: Callable[[], None] | None = None,
        on_forward: Callable[[int], None] | None = None,
        keyframe_interval_s: float = KEYFRAME_INTERVAL_S,
        queue_size: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kind: Kind = kind
        self.time_base = TIME_BASES[kind]
        self.forwarded = Forwarded()
        self.frames = 0
        """Encoded frames pushed (forwarded or not)."""
        self.keyframes = 0
        self.keyframe_requests = 0
        """Requests from subscribers (their PLI/FIR, a start, a drop)."""
        self.keyframe_requests_sent = 0
        """Requests passed to the publisher (rate-limited)."""
        self.queue_size = queue_size or (VIDEO_QUEUE if kind == "video" else AUDIO_QUEUE)
        self._request = request
        self._on_forward = on_forward
        self._interval = keyframe_interval_s
        self._clock = clock
        self._tracks: set[ForwardTrack] = set()
        self._last_request: float | None = None
        self._held: asyncio.TimerHandle | None = None
        self._first_ts: int | None = None
        self._last_ts = 0
        self._last_ext = 0
        self._closed = False

    def track(self) -> ForwardTrack:
        """A new subscriber track; it receives from its first ``recv()``."""
        return ForwardTrack(self, self.queue_size)

    @property
    def subscribers(self) -> int:
        """Tracks attached now (their senders are reading)."""
        return len(self._tracks)

    # ------------------------------------------------------------------ from the receiver

    def push(self, data: bytes, rtp_timestamp: int) -> None:
        """One complete encoded frame from the publisher (on the event loop)."""
        self.frames += 1
        keyframe = self.kind == "audio" or vp8_keyframe(data)
        if keyframe and self.kind == "video":
            self.keyframes += 1
            self._cancel_held()
        pts = self._pts(rtp_timestamp)
        if not self._tracks:
            return
        packet = av.Packet(data)
        packet.pts = pts
        packet.time_base = self.time_base
        for track in list(self._tracks):
            track._push(packet, keyframe)

    def _pts(self, timestamp: int) -> int:
        """The RTP timestamp unwrapped, counted from the first frame (in the codec clock)."""
        if self._first_ts is None:
            self._first_ts = self._last_ts = timestamp
            return 0
        delta = (timestamp - self._last_ts) % _TS_MOD
        if delta >= _TS_MOD // 2:
            delta -= _TS_MOD
        ext = self._last_ext + delta
        if ext > self._last_ext:
            self._last_ts, self._last_ext = timestamp, ext
        return ext

    # ------------------------------------------------------------------ keyframes

    def request_keyframe(self) -> None:
        """A subscriber needs a keyframe: ask the publisher now, or when the interval ends."""
        if self.kind != "video" or self._closed:
            return
        self.keyframe_requests += 1
        now = self._clock()
        if self._last_request is None or now - self._last_request >= self._interval:
            self._send_request(now)
        elif self._held is None:
            delay = self._last_request + self._interval - now
            self._held = asyncio.get_running_loop().call_later(delay, self._send_held)

    def _send_held(self) -> None:
        self._held = None
        if not self._closed:
            self._send_request(self._clock())

    def _send_request(self, now: float) -> None:
        self._last_request = now
        self.keyframe_requests_sent += 1
        if self._request is not None:
            self._request()

    def _cancel_held(self) -> None:
        if self._held is not None:
            self._held.cancel()
            self._held = None

    # ------------------------------------------------------------------ tracks

    def _attach(self, track: ForwardTrack) -> None:
        if self._closed:
            track._end()
            return
        self._tracks.add(track)
        if track.kind == "video":
            self.request_keyframe()

    def _detach(self, track: ForwardTrack) -> None:
        self._tracks.discard(track)

    def _count(self, size: int) -> None:
        self.forwarded.packets += 1
        self.forwarded.bytes += size
        if self._on_forward is not None:
            self._on_forward(size)

    def close(self) -> None:
        """The publisher is gone: every track ends once its queue is empty (idempotent)."""
        self._closed = True
        self._cancel_held()
        for track in list(self._tracks):
            track._end()
        self._tracks.clear()
