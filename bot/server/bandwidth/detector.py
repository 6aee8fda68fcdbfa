"""One window's statistics and the low/restored state machine judging them."""

from __future__ import annotations

from dataclasses import dataclass

from .settings import BandwidthSettings, Json, Verdict


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
