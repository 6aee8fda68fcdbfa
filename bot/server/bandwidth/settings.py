"""The detector's thresholds and the verdict type, shared by every module of the package."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Json = dict[str, Any]
Verdict = Literal["low", "restored"]


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
    restart_gap_s: float = 0.5
    """A kind whose packets pause this long (a mute, a replaced track) restarts when they
    resume: see ``warmup_s``."""
    warmup_s: float = 2.0
    """After a restart (or the room hearing ``user-video-unmuted``) that kind's queue delay,
    jitter and delivery are not judged for this long: a restarting encoder sends a keyframe
    burst and ramps its rate, which is not the link (loss still is)."""

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
        if self.restart_gap_s <= 0 or self.warmup_s < 0:
            raise ValueError("bandwidth settings: need restart_gap_s > 0 and warmup_s >= 0")
