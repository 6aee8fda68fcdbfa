"""The monitoring bot as the room's quality probe: verdicts (frozen, black, silent, ...), an
audio MOS and a video score per received stream, with hysteresis (``receive.quality``)."""

from .config import QualityConfig
from .judge import EVENTS, StreamJudge, StreamKey
from .mos import audio_mos, video_score
from .probe import QualityProbe
from .verdict import Verdict

__all__ = [
    "EVENTS",
    "QualityConfig",
    "QualityProbe",
    "StreamJudge",
    "StreamKey",
    "Verdict",
    "audio_mos",
    "video_score",
]
