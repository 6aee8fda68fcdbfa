"""The agent's YAML config: load, interpolate, validate, resolve where tokens come from.

A config names exactly one way to get into a room: ``server: embedded`` (start the local
room server in this process), a ``token`` (default ``${ENX_TOKEN}``), or credentials
(``api_url``, ``app_id``, ``app_key``, ``room_id``) from which each bot mints its own token.
``local_info`` and ``room_info`` keep EnableX's spelling so EnableX users recognise them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError
from .interpolate import interpolate
from .policy import FallbackSettings
from .schema import build

DEFAULT_API_URL = "https://api.enablex.io/video/v2"


@dataclass(frozen=True, kw_only=True)
class MediaConfig:
    """What the bot publishes: a numpy-drawn pattern and tone, or a file PyAV can open."""

    kind: Literal["synthetic", "file"] = "synthetic"
    width: int = 640
    height: int = 360
    fps: float = 15.0
    tone_hz: float | None = 440.0
    file: str | None = None
    loop: bool = True

    def __post_init__(self) -> None:
        if self.kind == "file" and not self.file:
            raise ValueError("media.kind is 'file' but media.file is not set")
        if not (16 <= self.width <= 3840 and 16 <= self.height <= 2160):
            raise ValueError(f"media size {self.width}x{self.height} is out of 16x16..3840x2160")
        if not 0 < self.fps <= 60:
            raise ValueError(f"media.fps {self.fps} is out of 0..60")


@dataclass(frozen=True, kw_only=True)
class LocalInfo:
    """EnableX ``localInfo``: what this participant publishes."""

    audio: bool = True
    video: bool = True
    data: bool = False
    name: str | None = None
    audio_muted: bool = field(default=False, metadata={"key": "audioMuted"})
    video_muted: bool = field(default=False, metadata={"key": "videoMuted"})
    max_video_bw: int | None = field(default=None, metadata={"key": "maxVideoBW"})
    min_video_bw: int | None = field(default=None, metadata={"key": "minVideoBW"})

    def to_enablex(self, default_name: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "audio": self.audio,
            "video": self.video,
            "data": self.data,
            "name": self.name or default_name,
            "audioMuted": self.audio_muted,
            "videoMuted": self.video_muted,
        }
        if self.max_video_bw is not None:
            out["maxVideoBW"] = self.max_video_bw
        if self.min_video_bw is not None:
            out["minVideoBW"] = self.min_video_bw
        return out


@dataclass(frozen=True, kw_only=True)
class RoomInfo:
    """EnableX ``roomInfo``: how the session behaves (reconnection, TURN, audio-only)."""

    allow_reconnect: bool = True
    number_of_attempts: int = 3
    timeout_interval: float = 15.0
    force_turn: bool = field(default=False, metadata={"key": "forceTurn"})
    audio_only: bool = False

    def __post_init__(self) -> None:
        if self.number_of_attempts < 0:
            raise ValueError("room_info.number_of_attempts must be 0 or more")
        if self.timeout_interval <= 0:
            raise ValueError("room_info.timeout_interval must be more than 0 seconds")

    def to_enablex(self) -> dict[str, Any]:
        return {
            "allow_reconnect": self.allow_reconnect,
            "number_of_attempts": self.number_of_attempts,
            "timeout_interval": self.timeout_interval,
            "forceTurn": self.force_turn,
            "audio_only": self.audio_only,
        }


@dataclass(frozen=True, kw_only=True)
class PolicyConfig:
    """How a bot adapts: ``bandwidth_fallback`` goes audio-only on a room bandwidth alert."""

    bandwidth_fallback: FallbackSettings = field(default_factory=FallbackSettings)


@dataclass(frozen=True, kw_only=True)
class BotConfig:
    name: str
    role: Literal["moderator", "participant", "viewer"] = "participant"
    user_ref: str = ""
    token: str | None = None
    join_delay: float = 0.0
    stay: float | None = None
    local_info: LocalInfo = field(default_factory=LocalInfo)
    room_info: RoomInfo = field(default_factory=RoomInfo)
    advance_options: dict[str, Any] = field(default_factory=dict)
    media: MediaConfig = field(default_factory=MediaConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("bot name is empty")
        if self.join_delay < 0:
            raise ValueError("join_delay must be 0 or more seconds")
        if self.stay is not None and self.stay <= 0:
            raise ValueError("stay must be more than 0 seconds (or omitted: until a signal)")


@dataclass(frozen=True, kw_only=True)
class EmbeddedConfig:
    host: str = "127.0.0.1"
    port: int = 0
    room_name: str = "enx-bot room"


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    server: Literal["embedded"] | None = None
    token: str | None = None
    api_url: str = DEFAULT_API_URL
    app_id: str | None = None
    app_key: str | None = None
    room_id: str | None = None
    embedded: EmbeddedConfig = field(default_factory=EmbeddedConfig)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    defaults: dict[str, Any] = field(default_factory=dict)
    bots: list[BotConfig] = field(default_factory=list)
    path: str = ""

    @property
    def mode(self) -> Literal["embedded", "token", "credentials"]:
        if self.server == "embedded":
            return "embedded"
        if self.token or any(b.token for b in self.bots):
            return "token"
        return "credentials"


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> AgentConfig:
    """Read, interpolate and validate a config file. Every problem is one ConfigError line."""
    env = os.environ if env is None else env
    p = Path(path)
    label = str(path)
    if not p.exists():
        raise ConfigError(f"config file {label} does not exist: give the path to a YAML file")
    if p.is_dir():
        raise ConfigError(f"config file {label} is a directory: give the path to a YAML file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"config file {label} cannot be read: {reason}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"config file {label} is not valid YAML{at}: {problem}") from None
    if raw is None:
        raise ConfigError(f"config file {label} is empty: see configs/demo.yaml for an example")
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {label} must be a YAML mapping at the top level")
    return parse_config(raw, env, label)


def parse_config(raw: dict[str, Any], env: Mapping[str, str], label: str = "config") -> AgentConfig:
    data = interpolate(raw, env)
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"{label}: defaults must be a mapping")
    bots = data.get("bots")
    if bots is None:
        raise ConfigError(f"{label}: 'bots' is missing: list at least one bot (see configs/demo.yaml)")
    if not isinstance(bots, list) or not bots:
        raise ConfigError(f"{label}: 'bots' must be a non-empty list of bots")
    merged = []
    for i, bot in enumerate(bots):
        if not isinstance(bot, dict):
            raise ConfigError(f"{label}: bots[{i}] must be a mapping")
        merged.append(_merge(defaults, bot))
    # validate the defaults' keys through the bots they were merged into
    data = {**data, "bots": merged, "defaults": {}}
    try:
        cfg = build(AgentConfig, data, "")
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from None
    cfg = _replace_path(cfg, label)
    _check_sources(cfg, label)
    names = [b.name for b in cfg.bots]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{label}: bot names must be unique; repeated: {', '.join(dupes)}")
    for i, bot in enumerate(cfg.bots):
        if bot.media.kind == "file" and bot.media.file and not Path(bot.media.file).is_absolute():
            base = Path(label).resolve().parent if Path(label).exists() else Path.cwd()
            candidate = base / bot.media.file
            if not Path(bot.media.file).exists() and candidate.exists():
                _set(cfg.bots[i].media, "file", str(candidate))
    return cfg


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def _replace_path(cfg: AgentConfig, label: str) -> AgentConfig:
    _set(cfg, "path", label)
    return cfg


def _check_sources(cfg: AgentConfig, label: str) -> None:
    if cfg.mode == "embedded":
        return
    if cfg.mode == "token":
        without = [b.name for b in cfg.bots if not b.token]
        if cfg.token and len(cfg.bots) > 1 and without:
            raise ConfigError(
                f"{label}: one token serves one bot (tokens are single use), but "
                f"{len(cfg.bots)} bots share it: give each bot its own token, or use credentials"
            )
        if not cfg.token and without:
            raise ConfigError(f"{label}: bot(s) {', '.join(without)} have no token")
        return
    missing = [k for k in ("app_id", "app_key", "room_id") if not getattr(cfg, k)]
    if missing:
        raise ConfigError(
            f"{label}: no way into a room: set ENX_TOKEN (token), or ENX_APP_ID, ENX_APP_KEY "
            f"and ENX_ROOM_ID (credentials; missing: {', '.join(missing)}), "
            "or write 'server: embedded'"
        )
    if not cfg.api_url.startswith(("http://", "https://")):
        raise ConfigError(f"{label}.api_url must start with http:// or https://, not {cfg.api_url!r}")
