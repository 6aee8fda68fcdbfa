"""Pre-encoded files sent without decoding: read once into memory, looped, shared.

:class:`EncodedFileSource` demuxes a file whose streams aiortc can send as they are (H.264,
VP8, Opus, G.711) once, at construction, and keeps the packets in memory. Its audio and video
are :class:`~bot.media.shared.fanout.PacketStream` objects: one paced task per stream serves every
subscriber track, so a hundred bots playing one file cost one reader.

aiortc's ``MediaPlayer(decode=False, loop=True)`` restarts timestamps on every loop and loses
its pacing; here each pass is re-stamped on one timeline whose timestamps keep increasing
(pass ``k`` of a stream starts at ``k * period``, the period being the longer of the two
streams), and packets are due on the wall clock. Audio and video share that clock, so a stream
that starts while the other is playing joins at the same position of the file.

A late video subscriber starts at the file's next keyframe: keyframe requests cannot be
honoured without re-encoding, so a file meant for this should have a short GOP (e.g. 1 s).
"""

from __future__ import annotations

import fractions
import math
import os
import time
from types import TracebackType
from typing import Self

import av

from .clips import Clip, load_clips
from .fanout import DEFAULT_QUEUE_SECONDS, Kind, PacketStream, PacketTrack, Schedule


class ClipStream(PacketStream):
    """One stream of an :class:`EncodedFileSource`: the clip, looped and paced, fanned out."""

    def __init__(self, owner: EncodedFileSource, clip: Clip, period: int, queue_size: int) -> None:
        name = f"encoded file {os.path.basename(owner.path)!r} {clip.kind} ({clip.mime_type})"
        super().__init__(clip.kind, clip.mime_type, name, queue_size)
        self.clip = clip
        self.period = period
        """Ticks from the start of one pass to the next (at least the clip's span)."""
        self.loops = 0
        """Passes completed."""
        self._owner = owner
        self._time_base = fractions.Fraction(1, clip.clock_rate)

    def _on_subscribe(self, kind: Kind) -> None:
        pass  # keyframes are where the file has them: a new subscriber waits for the next

    def _on_idle(self) -> None:
        self._owner._stream_idle()

    async def _run(self) -> None:
        clip, owner = self.clip, self._owner
        now = time.monotonic()
        if owner._origin is None:  # the first stream to start: play from the top
            owner._origin = now
            where: tuple[int, int] | None = (0, 0)
        else:  # the other stream is playing: join it where it is
            where = clip.locate(now - owner._origin, self.period, owner.loop)
        origin = owner._origin
        if where is None:  # played once, and the other stream is still finishing
            self._end_subscribers()
            return
        cycle, index = where
        schedule = Schedule(origin)
        while self._has_subscribers():
            pts = cycle * self.period + clip.offsets[index]
            late = await schedule.wait(pts / clip.clock_rate)
            if late > schedule.max_lag:
                schedule.shift(late)  # a stalled loop: resume from here rather than burst
            if not self._has_subscribers():
                break
            packet = av.Packet(clip.payloads[index])
            packet.pts = packet.dts = pts
            packet.time_base = self._time_base
            packet.is_keyframe = clip.keyframes[index]
            self._publish(packet, clip.keyframes[index])
            index += 1
            if index == len(clip):
                if not owner.loop:
                    self._end_subscribers()
                    return
                index = 0
                cycle += 1
                self.loops += 1


class EncodedFileSource:
    """A pre-encoded media file, sent without decoding to any number of subscriber tracks.

    Construction reads the file's first audio and video stream into memory and raises
    :class:`MediaSourceError` (one line: what, where, what to do) if it cannot be sent as it is.
    :meth:`video_track` and :meth:`audio_track` return a new track on every call; all of them
    share one paced reader per stream, which runs only while some track is sending. With
    ``loop`` false the file plays once from when the first track starts, and every track ends
    with it.
    """

    def __init__(self, path: str, loop: bool = True, *, queue_seconds: float = DEFAULT_QUEUE_SECONDS) -> None:
        self.path = path
        self.loop = loop
        audio, video = load_clips(path)
        seconds = max(c.seconds for c in (audio, video) if c is not None)
        self.duration = seconds
        """Seconds from the start of one pass to the next: the longer stream's length."""
        self._origin: float | None = None  # wall time of the first pass's start, while playing
        self.audio = self._stream(audio, seconds, queue_seconds)
        self.video = self._stream(video, seconds, queue_seconds)

    def _stream(self, clip: Clip | None, seconds: float, queue_seconds: float) -> ClipStream | None:
        if clip is None:
            return None
        period = max(clip.span, round(seconds * clip.clock_rate))
        per_second = len(clip) / clip.seconds
        return ClipStream(self, clip, period, max(2, math.ceil(per_second * queue_seconds)))

    @property
    def has_audio(self) -> bool:
        return self.audio is not None

    @property
    def has_video(self) -> bool:
        return self.video is not None

    def video_track(self) -> PacketTrack | None:
        """A new track of the file's video, or None if it has none."""
        return None if self.video is None else self.video.track()

    def audio_track(self) -> PacketTrack | None:
        """A new track of the file's audio, or None if it has none."""
        return None if self.audio is None else self.audio.track()

    def _stream_idle(self) -> None:
        if not any(s is not None and s.running for s in (self.audio, self.video)):
            self._origin = None  # the next track starts the file from the beginning

    async def aclose(self) -> None:
        """End every track handed out. Idempotent."""
        for stream in (self.audio, self.video):
            if stream is not None:
                await stream.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
