"""Judging received media without watching it all: cheap arrival readings for every frame and,
only where asked, a decoded sample now and then (mean luma, a small thumbnail, the audio level).

:class:`ProbeSink` is the sink; the agent (``bot.agent.quality``) turns its readings into
verdicts, events and scores. Nothing here knows thresholds except ``silence_dbfs``, which the
sink needs to remember when audio was last loud.
"""

from .measure import audio_dbfs, luma_thumbnail, picture_difference
from .probe_sink import Picture, ProbeSink, Reading

__all__ = ["Picture", "ProbeSink", "Reading", "audio_dbfs", "luma_thumbnail", "picture_difference"]
