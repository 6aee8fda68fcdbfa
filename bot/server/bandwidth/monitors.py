"""What one leg's monitor runs each tick: meters (publish) or receiver reports (subscribe)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .detector import Detector, WindowStats
from .meter import SENDER_REPORTS_KEPT, RtpMeter, combine
from .settings import BandwidthSettings, Verdict


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
        reports = self._reports.setdefault(ssrc, deque(maxlen=SENDER_REPORTS_KEPT))
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
