"""Sinks for received media: what happens to the encoded frames a remote participant sends.

- :class:`DiscardSink` counts frames, bytes and keyframes per kind, and nothing else;
- :class:`RecordSink` muxes the encoded frames into files as they come, without decoding or
  re-encoding: VP8 (+ Opus) into WebM, H.264 (+ Opus) into fragmented MP4 (or MPEG-TS);
- :class:`FrameSink` decodes and hands ``av.VideoFrame`` / ``av.AudioFrame`` to a callback: the
  only sink that decodes.

Every sink implements :class:`EncodedSink`; :func:`make_sink` builds one by name. (This package
is also the old address ``bot.media.sinks``; outside ``bot.media``, import from ``bot.media``.)
"""

from .base import KEYFRAME_REQUEST_INTERVAL, KINDS, DiscardSink, EncodedSink
from .factory import SinkKind, make_sink
from .frames import Frame, FrameSink
from .record import RecordSink

__all__ = [
    "KEYFRAME_REQUEST_INTERVAL",
    "KINDS",
    "DiscardSink",
    "EncodedSink",
    "Frame",
    "FrameSink",
    "RecordSink",
    "SinkKind",
    "make_sink",
]
