"""The adaptive audio-only fallback, as a pure state machine driven by the caller's clock.

An alert switches to audio-only at once and starts a minimum hold; further alerts during the
hold extend it (so flapping input cannot flap the video). Video comes back only once bandwidth
has been restored *continuously* for ``restore_after_s`` and the hold is over. The class does
no I/O and reads no clock: the bot feeds it ``now`` and asks :meth:`next_deadline` when to
poll again, which is what makes it testable with a fake clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Action(enum.Enum):
    FALLBACK = "audio_only_fallback"  # stop transmitting video, keep audio
    RESTORE = "video_restored"  # resume video


@dataclass(frozen=True, kw_only=True)
class FallbackSettings:
    enabled: bool = True
    restore_after_s: float = 5.0
    min_hold_s: float = 10.0

    def __post_init__(self) -> None:
        if self.restore_after_s < 0 or self.min_hold_s < 0:
            raise ValueError("restore_after_s and min_hold_s must be 0 or more seconds")


class BandwidthFallback:
    def __init__(self, settings: FallbackSettings) -> None:
        self.settings = settings
        self.audio_only = False
        self.hold_until = 0.0
        self.restored_since: float | None = None
        self.fallbacks = 0
        self.restores = 0

    def on_alert(self, now: float) -> Action | None:
        if not self.settings.enabled:
            return None
        self.restored_since = None
        self.hold_until = max(self.hold_until, now + self.settings.min_hold_s)
        if self.audio_only:
            return None
        self.audio_only = True
        self.fallbacks += 1
        return Action.FALLBACK

    def on_restored(self, now: float) -> Action | None:
        if not self.audio_only:
            return None
        if self.restored_since is None:
            self.restored_since = now
        return self.poll(now)

    def poll(self, now: float) -> Action | None:
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return None
        self.audio_only = False
        self.restored_since = None
        self.restores += 1
        return Action.RESTORE

    def next_deadline(self) -> float | None:
        """When :meth:`poll` may next change something; None while nothing is pending."""
        if not self.audio_only or self.restored_since is None:
            return None
        return max(self.restored_since + self.settings.restore_after_s, self.hold_until)
