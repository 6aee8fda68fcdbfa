"""Media statistics of a leg, per kind, turned into what a monitoring bot reports.

``legs/`` takes one sample per leg (one aiortc ``getStats()`` call plus the receive tap's
counters); here two samples of one kind become the figures of :meth:`~bot.rtc.EnxRtc.stats`:
rates over the interval between them (bitrate, frames per second, fraction lost) and the
running totals. "The last interval" is chosen by :class:`RateWindow`: back to the newest earlier
sample at least ``window_s`` old (the ``on_stats`` interval, else 1 s), so rates stay steady
whoever asks, and however often (``stats()`` and the periodic ``on_stats`` share the samples).

What aiortc provides and what it does not:

- A receive leg's ``inbound-rtp`` (packets received, lost, jitter) comes from aiortc's own RTP
  statistics; ``remote-outbound-rtp`` from the media server's RTCP sender reports. aiortc
  computes no round-trip time on a receive-only leg (that needs the sender's view of our
  receiver reports): ``roundTripTime`` is None there.
- A send leg's ``outbound-rtp`` (packets and bytes sent) is aiortc's; ``remote-inbound-rtp``
  (lost, fraction lost, jitter, round-trip time) comes from the media server's receiver reports.
- Bytes received, frames and keyframes come from the receive tap (``legs/subscribe.py``): RTP payload
  bytes, reassembled encoded frames. When the tap is unavailable frames are decoded frames.

The arithmetic is pure and knows no leg: the legs import it. The payload that walks the legs
(:func:`~bot.rtc.stats_payload.collect`) is in ``stats_payload.py``, above them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

Json = dict[str, Any]

DEFAULT_WINDOW_S = 1.0
"""Rates cover at least this long when no stats interval is set."""

CLOCK_RATES = {"audio": 48000, "video": 90000}
"""RTP clock rates of Opus and of every video codec, for jitter in seconds."""


@dataclass(frozen=True, kw_only=True)
class ReceiveSample:
    """One kind of one receive leg at one moment (``at``: ``time.monotonic()``)."""

    at: float
    packets: int = 0
    """RTP packets seen by the tap."""
    bytes: int | None = 0
    """RTP payload bytes seen by the tap (None: the tap could not count them)."""
    frames: int = 0
    keyframes: int = 0
    keyframe_requests: int = 0
    """PLIs we sent for this kind."""
    packets_received: int | None = None
    """aiortc's ``inbound-rtp``: None before the first packet."""
    packets_lost: int | None = None
    jitter_s: float | None = None
    remote_packets_sent: int | None = None
    """The sender's own count, from its last RTCP sender report."""
    remote_bytes_sent: int | None = None


@dataclass(frozen=True, kw_only=True)
class SendSample:
    """One kind of one send leg at one moment."""

    at: float
    packets_sent: int = 0
    bytes_sent: int = 0
    packets_lost: int | None = None
    """From the media server's last receiver report (None before the first)."""
    fraction_lost: float | None = None
    """As the last receiver report says (0..1, over the reporter's own interval)."""
    jitter_s: float | None = None
    round_trip_time: float | None = None


class _Timed(Protocol):
    @property
    def at(self) -> float: ...


S = TypeVar("S", bound=_Timed)


class RateWindow(Generic[S]):
    """The samples of one kind of one leg, kept just long enough to compute rates over at
    least ``window_s`` (or since the first sample, when younger than that)."""

    def __init__(self, first: S, window_s: float = DEFAULT_WINDOW_S) -> None:
        self.window_s = window_s
        self._samples: deque[S] = deque([first])

    def add(self, sample: S) -> S:
        """Keep ``sample``; return the one to compute its rates against: the newest earlier
        sample at least ``window_s`` older, else the oldest kept."""
        cutoff = sample.at - self.window_s
        base = self._samples[0]
        for kept in self._samples:
            if kept.at > cutoff:
                break
            base = kept
        while self._samples[0] is not base:
            self._samples.popleft()
        self._samples.append(sample)
        return base


def _rate(delta: float | None, seconds: float, scale: float = 1.0) -> float | None:
    if delta is None or seconds <= 0:
        return None
    return round(max(0.0, delta) * scale / seconds, 3)


def _delta(now: int | None, before: int | None) -> int | None:
    if now is None:
        return None
    return now - (before or 0)


def fraction_lost(lost: int | None, received: int | None) -> float | None:
    """Lost over expected (lost + received) for one interval; 0.0 when nothing was expected."""
    if lost is None or received is None:
        return None
    lost = max(0, lost)
    expected = lost + max(0, received)
    return 0.0 if expected == 0 else round(lost / expected, 4)


def receive_stats(previous: ReceiveSample | None, current: ReceiveSample) -> Json:
    """Payload of one kind of a receive leg: rates since ``previous`` (None: since zero at
    ``current.at``, i.e. no rates), totals as of ``current``."""
    seconds = 0.0 if previous is None else current.at - previous.at
    before = previous or ReceiveSample(at=current.at)
    bytes_delta = None if current.bytes is None else current.bytes - (before.bytes or 0)
    return {
        "bitrateKbps": _rate(bytes_delta, seconds, 8 / 1000),
        "framesPerSecond": _rate(current.frames - before.frames, seconds),
        "fractionLost": fraction_lost(
            _delta(current.packets_lost, before.packets_lost),
            _delta(current.packets_received, before.packets_received),
        ),
        "packetsReceived": current.packets_received if current.packets_received is not None else 0,
        "packetsLost": max(0, current.packets_lost or 0),
        "jitter": current.jitter_s,
        "roundTripTime": None,
        "bytesReceived": current.bytes,
        "frames": current.frames,
        "keyframes": current.keyframes,
        "keyframeRequests": current.keyframe_requests,
        "remotePacketsSent": current.remote_packets_sent,
        "remoteBytesSent": current.remote_bytes_sent,
    }


def send_stats(previous: SendSample | None, current: SendSample) -> Json:
    """Payload of one kind of a send leg (as :func:`receive_stats`)."""
    seconds = 0.0 if previous is None else current.at - previous.at
    before = previous or SendSample(at=current.at)
    return {
        "bitrateKbps": _rate(current.bytes_sent - before.bytes_sent, seconds, 8 / 1000),
        "packetsSent": current.packets_sent,
        "bytesSent": current.bytes_sent,
        "packetsLost": current.packets_lost,
        "fractionLost": current.fraction_lost,
        "jitter": current.jitter_s,
        "roundTripTime": current.round_trip_time,
    }


def interval(previous_at: float | None, at: float) -> float | None:
    """Seconds covered by a leg's rates (None for its first sample)."""
    return None if previous_at is None else round(at - previous_at, 3)
