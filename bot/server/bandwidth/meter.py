"""Per-kind RTP meters of a publish leg, fed by the taps on the server's own receivers."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from .detector import WindowStats
from .settings import BandwidthSettings

_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32
_SEEN_SLOTS = 2048  # distinct-packet memory per SSRC (sequence numbers)
_MAX_SEQ_JUMP = 3000  # a larger jump is a resync, not loss
_REBASE_MS = 100.0  # a restart whose transit jumps more: the sender's RTP clock did not run on
SENDER_REPORTS_KEPT = 16


def _signed(delta: int, modulus: int) -> int:
    delta %= modulus
    return delta - modulus if delta >= modulus // 2 else delta


class _Source:
    """Counters of one SSRC."""

    __slots__ = (
        "bytes",
        "clock_khz",
        "expected",
        "highest",
        "jitter_ms",
        "last_arrival_ms",
        "last_transit",
        "last_ts",
        "last_ts_ext",
        "minima",
        "rebase",
        "received",
        "restart_gap_ms",
        "restarted",
        "seen",
        "tick_min",
    )

    def __init__(self, seq: int, ts: int, clock_rate: int, minima_kept: int, restart_gap_ms: float) -> None:
        self.clock_khz = clock_rate / 1000.0
        self.highest = seq - 1  # extended; the first packet then counts as expected
        self.expected = 0
        self.received = 0
        self.bytes = 0
        self.seen = [-1] * _SEEN_SLOTS
        self.last_ts = ts
        self.last_ts_ext = 0  # RTP timestamp unwrapped, relative to the first packet
        self.last_transit: float | None = None
        self.last_arrival_ms = 0.0
        self.jitter_ms = 0.0
        self.tick_min: float | None = None
        self.minima: deque[float] = deque(maxlen=minima_kept)
        self.restart_gap_ms = restart_gap_ms
        self.restarted = False
        """Packets resumed after a pause (set here, taken by the meter's next sample)."""
        self.rebase = False
        """...and their transit jumped: the queue-delay baseline no longer applies."""

    def add(self, seq: int, ts: int, arrival_ms: float, size: int) -> bool:
        """Count one packet; False for a duplicate (or one too old to place)."""
        diff = _signed(seq - self.highest, _SEQ_MOD)
        if abs(diff) > _MAX_SEQ_JUMP:  # resync: the sender restarted its numbering
            ext = self.highest + 1 + (seq - self.highest - 1) % _SEQ_MOD
            self.highest = ext
            self.expected += 1
            self.seen = [-1] * _SEEN_SLOTS
        else:
            ext = self.highest + diff
            if diff > 0:
                self.expected += diff
                self.highest = ext
        slot = ext % _SEEN_SLOTS
        if self.seen[slot] == ext:
            return False
        self.seen[slot] = ext
        self.received += 1
        self.bytes += size
        paused = self.received > 1 and arrival_ms - self.last_arrival_ms >= self.restart_gap_ms
        self.last_arrival_ms = max(self.last_arrival_ms, arrival_ms)

        ts_ext = self.last_ts_ext + _signed(ts - self.last_ts, _TS_MOD)
        if ts_ext > self.last_ts_ext:
            self.last_ts, self.last_ts_ext = ts, ts_ext
        transit = arrival_ms - ts_ext / self.clock_khz
        if paused:  # a restart: the pause is not interarrival jitter
            self.restarted = True
            if self.last_transit is not None and abs(transit - self.last_transit) > _REBASE_MS:
                self.rebase = True
        elif self.last_transit is not None:
            self.jitter_ms += (abs(transit - self.last_transit) - self.jitter_ms) / 16.0
        self.last_transit = transit
        if self.tick_min is None or transit < self.tick_min:
            self.tick_min = transit
        return True

    def take_queue_ms(self, keep: bool = True) -> float | None:
        """Queue delay of the tick now ending (lowest transit above the baseline); with
        ``keep`` False (warming up) the tick is forgotten, baseline included."""
        low = self.tick_min
        self.tick_min = None
        if low is None or not keep:
            return None
        self.minima.append(low)
        return low - min(self.minima)


@dataclass(frozen=True)
class _SenderReport:
    arrival_s: float
    sent_s: float  # sender's NTP clock
    octets: int
    received: int  # distinct payload bytes of that SSRC received by the report's arrival
    last_arrival_ms: float  # when the last of those packets arrived


@dataclass(frozen=True)
class _Sample:
    t: float
    expected: int
    received: int
    bytes: int
    queue_ms: float | None
    jitter_ms: float | None


@dataclass
class RtpMeter:
    """Everything one receiver (one kind) got: fed per RTP packet and sender report by the tap
    on the server's receiver, sampled every tick."""

    clock_rate: int
    settings: BandwidthSettings = field(default_factory=BandwidthSettings)

    def __post_init__(self) -> None:
        s = self.settings
        self._sources: dict[int, _Source] = {}
        self._samples: deque[_Sample] = deque(maxlen=int(s.window_s / s.tick_s) + 2)
        self._reports: dict[int, deque[_SenderReport]] = {}
        self._minima_kept = max(1, int(s.baseline_s / s.tick_s))
        self._restart_asked = False
        self._warm_until = -math.inf
        self._warming = False
        self.restarts = 0
        """Restarts seen (pauses, and restarts the room was told of)."""

    @property
    def warming(self) -> bool:
        """Whether queue delay, jitter and delivery of this kind are held (after a restart)."""
        return self._warming

    def restart(self) -> None:
        """The sender says this kind restarts (``user-video-unmuted``): warm up at the next
        sample, as after a pause."""
        self._restart_asked = True

    def on_rtp(self, ssrc: int, seq: int, ts: int, arrival_ms: float, size: int) -> None:
        source = self._sources.get(ssrc)
        if source is None:
            gap_ms = self.settings.restart_gap_s * 1000
            source = self._sources[ssrc] = _Source(seq, ts, self.clock_rate, self._minima_kept, gap_ms)
        source.add(seq, ts, arrival_ms, size)

    def on_sender_report(self, ssrc: int, ntp: int, octets: int, arrival_s: float) -> None:
        source = self._sources.get(ssrc)
        if source is None or arrival_s < self._warm_until:
            return
        reports = self._reports.setdefault(ssrc, deque(maxlen=SENDER_REPORTS_KEPT))
        sent_s = (ntp >> 32) + (ntp & 0xFFFFFFFF) / float(1 << 32)
        reports.append(_SenderReport(arrival_s, sent_s, octets, source.bytes, source.last_arrival_ms))

    def _warm_up(self, now: float) -> bool:
        """Start (or extend) the warm-up after a restart; whether it holds at ``now``.

        A restart forgets the sender reports (one sent during the pause would measure the
        pause as a slow link), the pause's jump in transit (no jitter across it) and, when the
        transit jumped, the queue baseline; once warm, jitter starts afresh."""
        restarted, self._restart_asked = self._restart_asked, False
        for source in self._sources.values():
            if source.restarted:
                restarted, source.restarted = True, False
            if source.rebase:
                source.minima.clear()
                source.rebase = False
        if restarted:
            self.restarts += 1
            self._warm_until = now + self.settings.warmup_s
            self._reports.clear()
        warming = now < self._warm_until
        if self._warming and not warming:
            for source in self._sources.values():
                source.jitter_ms = 0.0
        self._warming = warming
        return warming

    def sample(self, now: float) -> None:
        warming = self._warm_up(now)
        sources = self._sources.values()
        queue: list[float] = []
        for source in self._sources.values():
            q = source.take_queue_ms(keep=not warming)
            if q is not None:
                queue.append(q)
        self._samples.append(
            _Sample(
                t=now,
                expected=sum(s.expected for s in self._sources.values()),
                received=sum(s.received for s in self._sources.values()),
                bytes=sum(s.bytes for s in self._sources.values()),
                queue_ms=min(queue) if queue else None,
                jitter_ms=None if warming else max((s.jitter_ms for s in sources), default=None),
            )
        )

    def window(self, now: float) -> KindWindow | None:
        """The last ``window_s`` (from the samples), or None before two samples exist."""
        if not self._samples:
            return None
        # from the newest sample at least a window old (ticks drift by a few ms)
        cutoff = now - self.settings.window_s + self.settings.tick_s / 2
        older = [s for s in self._samples if s.t <= cutoff]
        start = older[-1].t if older else self._samples[0].t
        samples = [s for s in self._samples if s.t >= start]
        if len(samples) < 2:
            return None
        first, last = samples[0], samples[-1]
        span = last.t - first.t
        expected = last.expected - first.expected
        received = last.received - first.received
        queue = [s.queue_ms for s in samples[1:] if s.queue_ms is not None]
        recent_cutoff = now - self.settings.recent_s + self.settings.tick_s / 2
        recent = [x for x in samples if x.t <= recent_cutoff]
        mid = recent[-1] if recent else first
        recent_span = last.t - mid.t
        return KindWindow(
            span_s=span,
            expected=expected,
            received=received,
            kbps=(last.bytes - first.bytes) * 8 / 1000 / span if span > 0 else 0.0,
            recent_kbps=(last.bytes - mid.bytes) * 8 / 1000 / recent_span if recent_span > 0 else 0.0,
            queue_ms=min(queue) if queue else None,
            jitter_ms=last.jitter_ms if received > 0 else None,
            delivery=self._delivery(first.t),
        )

    def _delivery(self, since: float) -> tuple[float, float] | None:
        """(received kbps, sent kbps) between the first and last sender report since ``since``.

        Sent: octets over the sender's clock. Received: the payload that had arrived by each
        report, over the arrival times of the last packets before them (not of the reports:
        aiortc stamps a report with the time of its last RTP packet, so after an encoder idle
        gap, e.g. frames skipped at a low bitrate cap, the report is much later than its stamp).
        """
        best: tuple[float, float] | None = None
        for reports in self._reports.values():
            recent = [r for r in reports if r.arrival_s >= since]
            if len(recent) < 2:
                continue
            a, b = recent[0], recent[-1]
            sent_dt = b.sent_s - a.sent_s
            recv_dt = (b.last_arrival_ms - a.last_arrival_ms) / 1000
            if sent_dt < 0.3 or recv_dt <= 0:
                continue
            sent = ((b.octets - a.octets) % _TS_MOD) * 8 / 1000 / sent_dt
            got = (b.received - a.received) * 8 / 1000 / recv_dt
            if best is None or sent > best[1]:
                best = (got, sent)
        return best


@dataclass(frozen=True, kw_only=True)
class KindWindow:
    span_s: float
    expected: int
    received: int
    kbps: float
    recent_kbps: float
    queue_ms: float | None
    jitter_ms: float | None
    delivery: tuple[float, float] | None

    @property
    def loss_pct(self) -> float:
        if self.expected <= 0:
            return 0.0
        return max(0.0, min(100.0, 100.0 * (1 - self.received / self.expected)))


def combine(windows: dict[str, KindWindow | None], settings: BandwidthSettings) -> WindowStats | None:
    """One publish leg's verdict input from its per-kind windows."""
    present = {k: w for k, w in windows.items() if w is not None}
    if not present:
        return None
    judged = [w for w in present.values() if w.expected >= settings.min_packets]
    queue = [w.queue_ms for w in present.values() if w.queue_ms is not None]
    jitter = [w.jitter_ms for w in present.values() if w.jitter_ms is not None]
    video = present.get("video")
    delivery = None
    if video is not None and video.delivery is not None:
        got, sent = video.delivery
        if sent >= settings.delivery_min_kbps:
            delivery = min(1.0, got / sent)
    return WindowStats(
        span_s=max(w.span_s for w in present.values()),
        packets=sum(w.expected for w in present.values()),
        loss_pct=max((w.loss_pct for w in judged), default=0.0),
        kbps=sum(w.kbps for w in present.values()),
        recent_kbps=sum(w.recent_kbps for w in present.values()),
        video_kbps=video.kbps if video is not None else 0.0,
        queue_ms=max(queue) if queue else None,
        jitter_ms=max(jitter) if jitter else None,
        delivery=delivery,
    )
