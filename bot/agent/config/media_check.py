"""Check media files before any bot joins, so a typo is exit 2 and not a half-started swarm."""

from __future__ import annotations

from bot.media import FileSource, MediaError, SyntheticVideoTrack

from ..errors import ConfigError
from .model import AgentConfig


def check_media(cfg: AgentConfig) -> None:
    seen: set[object] = set()
    for i, bot in enumerate(cfg.bots):
        m = bot.media
        if m.kind == "synthetic" and bot.local_info.video and (m.width, m.height, m.fps) not in seen:
            seen.add((m.width, m.height, m.fps))
            try:
                SyntheticVideoTrack(m.width, m.height, m.fps).stop()
            except MediaError as exc:
                raise ConfigError(f"{cfg.path}: bots[{i}].media: {exc}") from None
        if m.kind != "file" or not m.file or m.file in seen:
            continue
        seen.add(m.file)
        try:
            source = FileSource(m.file, loop=m.loop)
        except MediaError as exc:
            raise ConfigError(f"{cfg.path}: bots[{i}].media.file: {exc}") from None
        try:
            li = bot.local_info
            if li.video and not li.audio and not source.has_video:
                raise ConfigError(
                    f"{cfg.path}: bots[{i}].media.file {m.file!r} has no video stream, "
                    "and the bot publishes video only: set local_info.audio: true or use another file"
                )
            if li.audio and not li.video and not source.has_audio:
                raise ConfigError(
                    f"{cfg.path}: bots[{i}].media.file {m.file!r} has no audio stream, "
                    "and the bot publishes audio only: set local_info.video: true or use another file"
                )
        finally:
            source.close()
