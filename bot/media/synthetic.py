"""Old address of :mod:`bot.media.sources.synthetic`, kept for one release: import from ``bot.media``."""

from .sources.synthetic import (
    COUNTER_DIGITS,
    VIDEO_CLOCK_RATE,
    VIDEO_TIME_BASE,
    SyntheticVideoTrack,
    ToneAudioTrack,
    read_frame_counter,
)

__all__ = [
    "COUNTER_DIGITS",
    "VIDEO_CLOCK_RATE",
    "VIDEO_TIME_BASE",
    "SyntheticVideoTrack",
    "ToneAudioTrack",
    "read_frame_counter",
]
