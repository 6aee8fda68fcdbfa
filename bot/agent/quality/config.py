"""``receive.quality``: the thresholds of the quality probe, with defaults a person would pick.

Every threshold is what a viewer notices: a picture still for a second is a freeze (the
webrtc-stats definition), 5 fps is a slide show, 5% loss is audible, a MOS below 3.5 is
"fair" on the ITU-T P.800 scale. ``hold_s`` is the hysteresis: a raised verdict clears only after
the stream has been fine for that long, so a flapping stream gives one event pair, not dozens.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..rules.ramp import parse_duration


@dataclass(frozen=True, kw_only=True)
class QualityConfig:
    """Thresholds of the quality probe (see the README's monitoring section)."""

    freeze_ms: float = 1000.0
    """No video frame for this long while the publisher sends video: frozen."""
    min_fps: float = 5.0
    """Received frame rate below this over ``window_s``: ``video_fps_low``."""
    window_s: float = 3.0
    """The window frame rates and keyframe rates are measured over."""
    max_loss: float = 0.05
    """Fraction of packets lost over a stats interval above this: ``loss_high``."""
    max_jitter_ms: float = 50.0
    max_keyframes_per_s: float = 1.0
    """Keyframes received per second over ``window_s`` above this: ``keyframe_storm``."""
    gap_ms: float = 1000.0
    """No audio packet for this long while the publisher sends audio: ``audio_gap``."""
    decode_every_s: float | None = None
    """Decode one video keyframe per stream this often (None or 0: never decode video)."""
    decode_audio: bool = False
    """Decode all received Opus for its level (silence needs it)."""
    black_luma: float = 32.0
    """Mean luma (0..255) below this in a decoded sample: black (video-range black is 16)."""
    still_difference: float = 0.5
    """Mean absolute luma difference to the previous sample below this: the same picture."""
    still_s: float = 5.0
    """The same picture for this long while frames arrive: ``picture_frozen``."""
    silence_dbfs: float = -60.0
    silence_ms: float = 2000.0
    """Audio below ``silence_dbfs`` for this long: ``audio_silent``."""
    min_mos: float = 3.5
    for_s: float | str = 5.0
    """Audio MOS or video score below ``min_mos`` for this long: ``quality_degraded``."""
    hold_s: float | str = 3.0
    """A raised verdict clears only after the stream was fine for this long."""
    max_streams: int = 100
    """Streams with their own metric series; the rest share ``stream="_other"``."""

    def __post_init__(self) -> None:
        positive = ("freeze_ms", "min_fps", "window_s", "max_jitter_ms", "max_keyframes_per_s", "gap_ms")
        for key in (*positive, "still_s", "silence_ms"):
            if not getattr(self, key) > 0:
                raise ValueError(f"quality.{key} must be more than 0, not {getattr(self, key)}")
        if not 0 < self.max_loss < 1:
            raise ValueError(f"quality.max_loss is a fraction of packets (0.05 is 5%), not {self.max_loss}")
        if self.decode_every_s and not self.decode_every_s >= 0.5:
            raise ValueError(
                f"quality.decode_every_s must be 0.5 s or more (0: off), not {self.decode_every_s}"
            )
        if not 0 <= self.black_luma <= 255:
            raise ValueError(f"quality.black_luma is a mean luma (0..255), not {self.black_luma}")
        if not self.still_difference >= 0:
            raise ValueError(f"quality.still_difference must be 0 or more, not {self.still_difference}")
        if not -120 <= self.silence_dbfs < 0:
            raise ValueError(
                f"quality.silence_dbfs must be from -120 to below 0 dBFS, not {self.silence_dbfs}"
            )
        if not 1 <= self.min_mos <= 4.5:
            raise ValueError(f"quality.min_mos is a MOS (1..4.5), not {self.min_mos}")
        for key in ("for_s", "hold_s"):
            if not parse_duration(getattr(self, key), f"quality.{key}") >= 0:
                raise ValueError(f"quality.{key} must be 0 seconds or more")
        if not 1 <= self.max_streams <= 10_000:
            raise ValueError(f"quality.max_streams must be from 1 to 10000, not {self.max_streams}")

    @property
    def hold(self) -> float:
        return parse_duration(self.hold_s, "quality.hold_s")

    @property
    def degraded_after(self) -> float:
        return parse_duration(self.for_s, "quality.for_s")

    @property
    def sample_every(self) -> float | None:
        """Seconds between decoded video samples; None: none."""
        return self.decode_every_s or None

    @property
    def decodes(self) -> bool:
        return self.sample_every is not None or self.decode_audio
