"""Building a sink by name, as the config and ``EnxRtc(sink=...)`` give it."""

from __future__ import annotations

from typing import Any, Literal

from ..errors import MediaSourceError
from .base import DiscardSink, EncodedSink
from .frames import FrameSink
from .record import RecordSink

SinkKind = Literal["discard", "record", "frames"]


def make_sink(kind: SinkKind, **kw: Any) -> EncodedSink:
    """``discard``: :class:`DiscardSink`; ``record``: :class:`RecordSink` (``directory``,
    ``participant``...); ``frames``: :class:`FrameSink` (``on_frame``...). Keywords go to the
    constructor."""
    if kind == "discard":
        return DiscardSink(**kw)
    if kind == "record":
        return RecordSink(**kw)
    if kind == "frames":
        return FrameSink(**kw)
    raise MediaSourceError(f"sink kind {kind!r} is unknown: use 'discard', 'record' or 'frames'")
