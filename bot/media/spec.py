"""What a bot publishes (the ``media`` section of the config) and the tracks it turns into.

Everything here is an aiortc ``MediaStreamTrack`` paced in real time, built only on aiortc, av
and numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aiortc.mediastreams import MediaStreamTrack

from .errors import MediaSourceError
from .sources.file import FileSource
from .sources.synthetic import SyntheticVideoTrack, ToneAudioTrack


@dataclass(frozen=True)
class MediaSpec:
    """What a bot publishes: the ``media`` section of the config. Validates itself."""

    kind: Literal["synthetic", "file"] = "synthetic"
    """``synthetic``: test pattern and tone; ``file``: play ``file``."""
    width: int = 640
    """Synthetic video width in pixels (even)."""
    height: int = 360
    """Synthetic video height in pixels (even)."""
    fps: float = 15.0
    """Synthetic video frame rate; files play at their own rate."""
    tone_hz: float | None = 440.0
    """Synthetic audio tone; None sends silence."""
    file: str | None = None
    """Path of the media file, required when ``kind`` is ``file``."""
    loop: bool = True
    """Replay the file from the start when it ends; otherwise the tracks end with it."""

    def __post_init__(self) -> None:
        if self.kind not in ("synthetic", "file"):
            raise MediaSourceError(
                f"media kind {self.kind!r} is unknown: use 'synthetic' or 'file' for media.kind"
            )
        if self.kind == "file" and not self.file:
            raise MediaSourceError("media.kind is 'file' but media.file is not set: give a file path")


def open_media(
    spec: MediaSpec, *, audio: bool, video: bool, label: str = ""
) -> tuple[MediaStreamTrack | None, MediaStreamTrack | None]:
    """Build the ``(audio, video)`` tracks asked for; a kind not asked for is None.

    For a file, a kind the file lacks comes back as None (asked for audio and video of an
    audio-only file: ``(audio, None)``), so a bot publishes what there is. It is a
    :class:`MediaSourceError` only when none of the kinds asked for is in the file. Synthetic
    parameters are checked here too, so every config mistake raises before joining.
    """
    if spec.kind == "synthetic":
        return (
            ToneAudioTrack(frequency=spec.tone_hz) if audio else None,
            SyntheticVideoTrack(spec.width, spec.height, spec.fps, label=label) if video else None,
        )
    assert spec.file is not None  # MediaSpec checks it
    if not (audio or video):
        return None, None
    source = FileSource(spec.file, loop=spec.loop)
    want_audio = audio and source.has_audio
    want_video = video and source.has_video
    if not (want_audio or want_video):
        has = "audio" if source.has_audio else "video"
        asked = "audio" if audio else "video"
        raise MediaSourceError(
            f"media file {spec.file!r} has no {asked} stream, only {has}: "
            f"use a file with {asked} or publish {has}"
        )
    return (
        source.audio_track() if want_audio else None,
        source.video_track() if want_video else None,
    )
