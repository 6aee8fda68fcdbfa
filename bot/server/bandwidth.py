"""Bandwidth alerts from what the media legs really carry (PROTOCOL.md section 7). Pure.

Wire payloads the server sends (``bot.rtc`` maps them; all are ``bandwidthEvents {id, msg}``):

**A publisher's uplink is too poor** (judged on its publish leg):

- to that participant::

    {"id": "publisher-bw", "msg": {"message": "SubscriberBandWidth", "bandwidth": <kbps>}}

- to every other participant, one event per announced stream of it::

    {"id": "bw-alert", "msg": [{"streamId": <id>, "bw": "low", "type": "publisher", "name": <name>}]}

**It recovered** (a full window healthy):

- to that participant (the alert again, with ``restored: true``; ``bandwidth`` is what the
  window carried)::

    {"id": "publisher-bw", "msg": {"message": "SubscriberBandWidth", "bandwidth": <kbps>,
                                   "restored": true}}

- to the others: the same ``bw-alert`` entry with ``"bw": "restored"``.

**A subscriber's downlink is too poor** (judged on a subscribe leg, from the RTCP receiver
reports the subscriber sends), to that subscriber only::

    {"id": "bw-alert", "msg": [{"streamId": <id>, "bw": "low"|"restored", "type": "subscriber",
                                "name": <publisher's stream name>}]}

``<kbps>`` is the payload bitrate (all kinds) the server received over the last
``recent_s`` (1 s; for an alert: what the link carries now) or, for a restore, over the whole
window; rounded, at least 1. The emulator's ``POST /emulator/rooms/{room_id}/bandwidth`` sends exactly these
events through the same code path.

What is measured (per publish leg, by taps on the server's own aiortc receivers)
-----------------------------------------------------------------------------------
Every ``tick_s`` each leg's counters are sampled; a verdict covers the last ``window_s``:

- **loss**: from RTP sequence numbers, per SSRC: packets expected (sequence span) against
  distinct packets received; duplicates are ignored and a late retransmission counts as
  received. The worst kind that expected at least ``min_packets`` counts. Audio carries no
  retransmissions in aiortc, so audio loss is the raw network loss.
- **queue delay**: transit = arrival time - RTP timestamp (per SSRC, clock rate of the kind);
  the lowest transit in the window minus the lowest over the last ``baseline_s``. A standing
  queue in front of a link that is too slow shows here before anything is dropped. Taking the
  window's minimum ignores bursts and event-loop hiccups.
- **delivery**: video bitrate received against what the publisher says it sent, from its RTCP
  sender reports (octet counts over the sender's NTP clock). A link slower than the sender
  gives a ratio under 1 while its queue grows. This is how "video bitrate below what the
  publisher should send" is judged: against the publisher's *actual* encoder output, not its
  configured bitrate, because a static picture encodes to a few kbps whatever the target
  (aiortc's VP8 starts at 500 kbps and moves between 250 and 1500 kbps with REMB).
- **jitter**: RFC 3550 interarrival jitter, worst kind.

Low when any of: loss >= ``loss_low_pct``, queue delay >= ``delay_low_ms``, delivery <=
``delivery_low`` (only judged while the publisher sends at least ``delivery_min_kbps`` of
video), jitter >= ``jitter_low_ms``. Restored when a full window after the alert is under every
restore threshold (``loss_restore_pct``, ``delay_restore_ms``, ``delivery_restore``,
``jitter_restore_ms``). No verdict while a window expected fewer than ``min_packets``
packets (nothing flows: muted, or the link is cut entirely; ICE reports the latter).

Defaults (:class:`BandwidthSettings`): window 2.5 s, tick 0.5 s, loss 5 % / 2 %, queue delay
400 ms / 150 ms, delivery 0.6 / 0.85 (from 30 kbps of video), jitter 200 ms / 100 ms, at least
20 packets per window, delay baseline over 60 s, an alert's bandwidth over the last 1 s.

Limits, honestly
----------------
- Once the participant has fallen back to audio only, no video arrives: the restore is then
  judged on audio alone (loss, queue delay, jitter). That says "the link carries audio cleanly
  again", not "the link would now carry the video": a link that is merely slow (no loss, no
  queue at audio rates) restores although video would congest it again. A lossy link (the
  tests throttle with netem ``rate`` *and* ``loss``) restores only once the loss is gone.
- The queue-delay baseline is the lowest transit of the last 60 s: a congestion that lasts
  longer raises it, and the delay signal then reads normal (loss and delivery still count).
  Clock drift between the peers is ignored (about 0.4 ms per minute at 100 ppm).
- Delivery relies on the publisher's RTCP sender reports (aiortc and browsers send them every
  0.5-1.5 s); without two of them in a window it is not judged.
- Subscribe legs are judged only from the subscriber's receiver reports (loss and jitter):
  the server's sender sees no arrival times.
- A total outage (nothing arrives) gives no verdict: ICE consent (about 30 s) fails the leg.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

Json = dict[str, Any]
Verdict = Literal["low", "restored"]

PUBLISHER_BW_ID = "publisher-bw"
BW_ALERT_ID = "bw-alert"
SUBSCRIBER_BANDWIDTH = "SubscriberBandWidth"

_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32
_SEEN_SLOTS = 2048  # distinct-packet memory per SSRC (sequence numbers)
_MAX_SEQ_JUMP = 3000  # a larger jump is a resync, not loss
_SENDER_REPORTS_KEPT = 16


@dataclass(frozen=True, kw_only=True)
class BandwidthSettings:
    """Thresholds and window of the bandwidth detector (see the module docstring)."""

    enabled: bool = True
    """Run the detector at all (the injection endpoint works either way)."""
    window_s: float = 2.5
    """Each verdict covers this much of the recent past; also the minimum time between an
    alert and its restore."""
    tick_s: float = 0.5
    """How often the legs are sampled and judged."""
    loss_low_pct: float = 5.0
    """Packet loss (worst kind) at or above which the link is low."""
    loss_restore_pct: float = 2.0
    """Packet loss below which (for a whole window) a low link is restored."""
    delay_low_ms: float = 400.0
    """Standing queue delay at or above which the link is low."""
    delay_restore_ms: float = 150.0
    """Queue delay below which a low link is restored."""
    delivery_low: float = 0.6
    """Video received / video sent at or below which the link is low."""
    delivery_restore: float = 0.85
    """Video received / video sent at or above which a low link is restored."""
    delivery_min_kbps: float = 30.0
    """Delivery is judged only while the publisher sends at least this much video."""
    jitter_low_ms: float = 200.0
    """Interarrival jitter at or above which the link is low."""
    jitter_restore_ms: float = 100.0
    """Interarrival jitter below which a low link is restored."""
    min_packets: int = 20
    """Packets a window must expect before any verdict."""
    baseline_s: float = 60.0
    """The queue-delay baseline is the lowest transit over this long."""
    recent_s: float = 1.0
    """An alert reports the bitrate received over this last part of the window."""

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.tick_s <= 0 or self.tick_s > self.window_s:
            raise ValueError("bandwidth settings: need 0 < tick_s <= window_s")
        if self.loss_restore_pct > self.loss_low_pct or self.delay_restore_ms > self.delay_low_ms:
            raise ValueError("bandwidth settings: restore thresholds must not be above the low ones")
        if self.jitter_restore_ms > self.jitter_low_ms or self.delivery_restore < self.delivery_low:
            raise ValueError("bandwidth settings: restore thresholds must be on the healthy side")
        if self.min_packets < 1 or self.baseline_s < self.window_s:
            raise ValueError("bandwidth settings: min_packets >= 1 and baseline_s >= window_s")
        if not self.tick_s <= self.recent_s <= self.window_s:
            raise ValueError("bandwidth settings: need tick_s <= recent_s <= window_s")


# --------------------------------------------------------------------------- payloads


def publisher_event(kbps: float, *, restored: bool = False) -> Json:
    """``bandwidthEvents`` payload for the participant whose uplink is judged."""
    msg: Json = {"message": SUBSCRIBER_BANDWIDTH, "bandwidth": max(1, round(kbps))}
    if restored:
        msg["restored"] = True
    return {"id": PUBLISHER_BW_ID, "msg": msg}


def stream_event(
    stream_id: int, name: str, verdict: Verdict, kind: Literal["publisher", "subscriber"]
) -> Json:
    """``bandwidthEvents`` payload naming one stream as low / restored."""
    bw = "low" if verdict == "low" else "restored"
    return {"id": BW_ALERT_ID, "msg": [{"streamId": stream_id, "bw": bw, "type": kind, "name": name}]}


# --------------------------------------------------------------------------- window statistics


@dataclass(frozen=True, kw_only=True)
class WindowStats:
    """What one leg carried over one window."""

    span_s: float
    packets: int
    """Packets expected (all kinds)."""
    loss_pct: float
    kbps: float
    """Payload bitrate received, all kinds, over the window."""
    recent_kbps: float | None = None
    """The same over the last ``recent_s`` (None: not measured)."""
    video_kbps: float = 0.0
    queue_ms: float | None = None
    jitter_ms: float | None = None
    delivery: float | None = None
    """Video received / video sent (publisher's sender reports), when judged."""

    def low_reasons(self, s: BandwidthSettings) -> list[str]:
        reasons = []
        if self.loss_pct >= s.loss_low_pct:
            reasons.append("loss")
        if self.queue_ms is not None and self.queue_ms >= s.delay_low_ms:
            reasons.append("queue_delay")
        if self.delivery is not None and self.delivery <= s.delivery_low:
            reasons.append("delivery")
        if self.jitter_ms is not None and self.jitter_ms >= s.jitter_low_ms:
            reasons.append("jitter")
        return reasons

    def healthy(self, s: BandwidthSettings) -> bool:
        return (
            self.loss_pct < s.loss_restore_pct
            and (self.queue_ms is None or self.queue_ms < s.delay_restore_ms)
            and (self.delivery is None or self.delivery >= s.delivery_restore)
            and (self.jitter_ms is None or self.jitter_ms < s.jitter_restore_ms)
        )

    def to_json(self) -> Json:
        def r(x: float | None, nd: int = 1) -> float | None:
            return None if x is None else round(x, nd)

        return {
            "span_s": r(self.span_s, 2),
            "packets": self.packets,
            "loss_pct": r(self.loss_pct),
            "kbps": r(self.kbps),
            "recent_kbps": r(self.recent_kbps),
            "video_kbps": r(self.video_kbps),
            "queue_ms": r(self.queue_ms),
            "jitter_ms": r(self.jitter_ms),
            "delivery": r(self.delivery, 2),
        }


class Detector:
    """The low/restored state machine of one leg; only transitions come out."""

    def __init__(self, settings: BandwidthSettings, now: float) -> None:
        self.settings = settings
        self.low = False
        self.reasons: list[str] = []
        self._since = now  # start of the leg, or of the last transition
        self.last: WindowStats | None = None

    def reset(self, now: float) -> None:
        """Back to healthy, judging afresh after a full window (e.g. after an injected restore)."""
        self.low = False
        self.reasons = []
        self._since = now

    def judge(self, stats: WindowStats | None, now: float) -> Verdict | None:
        s = self.settings
        self.last = stats
        if stats is None or stats.packets < s.min_packets or now - self._since < s.window_s:
            return None
        if not self.low:
            reasons = stats.low_reasons(s)
            if reasons:
                self.low, self.reasons, self._since = True, reasons, now
                return "low"
        elif stats.healthy(s):
            self.low, self.reasons, self._since = False, [], now
            return "restored"
        return None


# --------------------------------------------------------------------------- RTP meters


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
        "received",
        "seen",
        "tick_min",
    )

    def __init__(self, seq: int, ts: int, clock_rate: int, minima_kept: int) -> None:
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
        self.last_arrival_ms = max(self.last_arrival_ms, arrival_ms)

        ts_ext = self.last_ts_ext + _signed(ts - self.last_ts, _TS_MOD)
        if ts_ext > self.last_ts_ext:
            self.last_ts, self.last_ts_ext = ts, ts_ext
        transit = arrival_ms - ts_ext / self.clock_khz
        if self.last_transit is not None:
            self.jitter_ms += (abs(transit - self.last_transit) - self.jitter_ms) / 16.0
        self.last_transit = transit
        if self.tick_min is None or transit < self.tick_min:
            self.tick_min = transit
        return True

    def take_queue_ms(self) -> float | None:
        """Queue delay of the tick now ending (lowest transit above the baseline)."""
        low = self.tick_min
        self.tick_min = None
        if low is None:
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

    def on_rtp(self, ssrc: int, seq: int, ts: int, arrival_ms: float, size: int) -> None:
        source = self._sources.get(ssrc)
        if source is None:
            source = self._sources[ssrc] = _Source(seq, ts, self.clock_rate, self._minima_kept)
        source.add(seq, ts, arrival_ms, size)

    def on_sender_report(self, ssrc: int, ntp: int, octets: int, arrival_s: float) -> None:
        source = self._sources.get(ssrc)
        if source is None:
            return
        reports = self._reports.setdefault(ssrc, deque(maxlen=_SENDER_REPORTS_KEPT))
        sent_s = (ntp >> 32) + (ntp & 0xFFFFFFFF) / float(1 << 32)
        reports.append(_SenderReport(arrival_s, sent_s, octets, source.bytes, source.last_arrival_ms))

    def sample(self, now: float) -> None:
        queue: list[float] = []
        for source in self._sources.values():
            q = source.take_queue_ms()
            if q is not None:
                queue.append(q)
        self._samples.append(
            _Sample(
                t=now,
                expected=sum(s.expected for s in self._sources.values()),
                received=sum(s.received for s in self._sources.values()),
                bytes=sum(s.bytes for s in self._sources.values()),
                queue_ms=min(queue) if queue else None,
                jitter_ms=max((s.jitter_ms for s in self._sources.values()), default=None),
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


class PublishMonitor:
    """Meters and detector of one publish leg."""

    def __init__(self, settings: BandwidthSettings, now: float) -> None:
        self.settings = settings
        self.meters: dict[str, RtpMeter] = {
            "audio": RtpMeter(48000, settings),
            "video": RtpMeter(90000, settings),
        }
        self.detector = Detector(settings, now)

    def tick(self, now: float) -> Verdict | None:
        for meter in self.meters.values():
            meter.sample(now)
        stats = combine({k: m.window(now) for k, m in self.meters.items()}, self.settings)
        return self.detector.judge(stats, now)


# --------------------------------------------------------------------------- subscribe legs


@dataclass(frozen=True)
class _ReceiverReport:
    t: float
    lost: int  # cumulative
    highest: int  # extended highest sequence number received
    jitter_ms: float


class SubscribeMonitor:
    """Detector of one subscribe leg, fed the RTCP receiver reports the subscriber sends about
    the server's streams (one per kind)."""

    def __init__(self, settings: BandwidthSettings, now: float) -> None:
        self.settings = settings
        self.detector = Detector(settings, now)
        self._reports: dict[int, deque[_ReceiverReport]] = {}
        self._clock: dict[int, float] = {}

    def on_receiver_report(
        self, ssrc: int, clock_rate: int, lost: int, highest: int, jitter: int, now: float
    ) -> None:
        reports = self._reports.setdefault(ssrc, deque(maxlen=_SENDER_REPORTS_KEPT))
        reports.append(_ReceiverReport(now, lost, highest, jitter * 1000.0 / clock_rate))

    def window(self, now: float) -> WindowStats | None:
        since = now - self.settings.window_s
        losses: list[float] = []
        packets = 0
        jitter: list[float] = []
        for reports in self._reports.values():
            recent = [r for r in reports if r.t >= since]
            if not recent:
                continue
            jitter.append(recent[-1].jitter_ms)
            if len(recent) < 2:
                continue
            a, b = recent[0], recent[-1]
            expected = b.highest - a.highest
            if expected <= 0:
                continue
            packets += expected
            if expected >= self.settings.min_packets:
                losses.append(max(0.0, min(100.0, 100.0 * (b.lost - a.lost) / expected)))
        if packets == 0:
            return None
        return WindowStats(
            span_s=self.settings.window_s,
            packets=packets,
            loss_pct=max(losses, default=0.0),
            kbps=0.0,
            jitter_ms=max(jitter) if jitter else None,
        )

    def tick(self, now: float) -> Verdict | None:
        return self.detector.judge(self.window(now), now)
