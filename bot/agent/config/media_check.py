"""Check media files before any bot joins, so a typo is exit 2 and not a half-started swarm.

A file is opened the way ``run`` will open it: through the shared, pre-encoded path
(:class:`bot.media.EncodedFileSource`, which refuses what cannot be sent without re-encoding)
when the bot shares media, else through the decoding :class:`bot.media.FileSource`. A bot that
publishes a kind its file does not have is refused: it would publish a stream with nothing in it.
"""

from __future__ import annotations

from bot.media import EncodedFileSource, FileSource, MediaError, SyntheticVideoTrack

from ..errors import ConfigError
from .model import AgentConfig


def _kinds(path: str, loop: bool, shared: bool) -> tuple[bool, bool]:
    """(has audio, has video), or MediaError as ``run`` would raise it."""
    if shared:
        encoded = EncodedFileSource(path, loop=loop)  # reads the file; starts nothing
        return encoded.has_audio, encoded.has_video
    source = FileSource(path, loop=loop)
    try:
        return source.has_audio, source.has_video
    finally:
        source.close()


def check_media(cfg: AgentConfig) -> None:
    synthetic: set[tuple[int, int, float]] = set()
    files: dict[tuple[str, bool, bool], tuple[bool, bool]] = {}
    for i, bot in enumerate(cfg.bots):
        m = bot.media
        li = bot.join_local_info()  # what it will publish: none for a viewer, no video audio-only
        if m.kind == "synthetic" and li.video and (m.width, m.height, m.fps) not in synthetic:
            synthetic.add((m.width, m.height, m.fps))
            try:
                SyntheticVideoTrack(m.width, m.height, m.fps).stop()
            except MediaError as exc:
                raise ConfigError(f"{cfg.path}: bots[{i}].media: {exc}") from None
        if not (li.audio or li.video):
            continue
        shared = cfg.shared_media if m.shared is None else m.shared
        paths = [(f"bots[{i}].media.file", m.file)] if m.kind == "file" and m.file else []
        paths += [
            (f"bots[{i}].scenario[{j}].file", step.file)
            for j, step in enumerate(bot.scenario)
            if step.do == "switch_media" and step.file
        ]
        for where, path in paths:
            key = (path, m.loop, shared)
            if key not in files:
                try:
                    files[key] = _kinds(path, m.loop, shared)
                except MediaError as exc:
                    raise ConfigError(f"{cfg.path}: {where}: {exc}") from None
            has = dict(zip(("audio", "video"), files[key], strict=True))
            for kind, asked in (("audio", li.audio), ("video", li.video)):
                if asked and not has[kind]:
                    raise ConfigError(
                        f"{cfg.path}: {where} {path!r} has no {kind} stream, and the bot "
                        f"publishes {kind}: set local_info.{kind}: false or use a file with {kind}"
                    )
