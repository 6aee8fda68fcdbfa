"""The agent's YAML config: load, interpolate, validate, resolve where tokens come from.

A config names exactly one way to get into a room: ``server: embedded`` (start the local
room server in this process), a ``token`` (default ``${ENX_TOKEN}``), a ``token_file`` of
pre-issued tokens, a ``token_url`` (the user's own app server), or credentials (``api_url``,
``app_id``, ``app_key``, ``room_id``/``rooms``) from which each bot mints its own token.
``local_info`` and ``room_info`` keep EnableX's spelling so EnableX users recognise them.

A bot entry may stand for many bots (``count: 200`` with ``name: load-{i}``), each drawn from
weighted ``variants``; the config's ``bots`` is the expanded list, in order, and a bot's
position in it is its global index (the ramp's order and the ``ENX_SHARD_INDEX`` slice).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import string
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError
from .interpolate import interpolate
from .policy import FallbackSettings
from .ramp import Backoff, RampSchedule, Stage, parse_duration
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
    shared: bool | None = None
    """Share one encoding with the process's other bots (None: the top-level ``shared_media``)."""

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


SubscribeMode = Literal["none", "all", "audio"]


@dataclass(frozen=True, kw_only=True)
class ReceiveConfig:
    """What the bot receives and where it goes: ``subscribe`` ``none`` (default), ``all``,
    ``audio`` (audio only) or a list of participant names; at most ``max_video`` streams with
    video (like EnableX's active talkers); each received stream goes to a ``sink``: ``discard``
    (count, never decode), ``record`` (files under ``record_dir``, no re-encoding, a new file
    every ``rotate_s``) or ``frames`` (decode and drop: the CPU of a real viewer);
    ``stats_interval_s`` logs ``stream_stats`` per received stream this often."""

    subscribe: SubscribeMode | list[str] = "none"
    max_video: int | None = None
    sink: Literal["discard", "record", "frames"] = "discard"
    record_dir: str = "recordings"
    rotate_s: float | str | None = None
    stats_interval_s: float | str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.subscribe, tuple | list):
            if not self.subscribe:
                raise ValueError("receive.subscribe is an empty list: name participants, or use none")
            if any(not str(n).strip() for n in self.subscribe):
                raise ValueError("receive.subscribe has an empty participant name")
        if self.max_video is not None and self.max_video < 0:
            raise ValueError(f"receive.max_video must be 0 or more streams, not {self.max_video}")
        if self.sink == "record" and not self.record_dir.strip():
            raise ValueError("receive.record_dir is empty: give the folder recordings go to")
        for key in ("rotate_s", "stats_interval_s"):
            value = getattr(self, key)
            if value is not None and not parse_duration(value, f"receive.{key}") > 0:
                raise ValueError(f"receive.{key} must be more than 0 seconds (or omitted: never)")
        if self.rotate_s is not None and self.sink != "record":
            raise ValueError(f"receive.rotate_s applies to sink: record, not to sink: {self.sink}")

    @property
    def rotate_seconds(self) -> float | None:
        return None if self.rotate_s is None else parse_duration(self.rotate_s, "receive.rotate_s")

    @property
    def stats_seconds(self) -> float | None:
        if self.stats_interval_s is None:
            return None
        return parse_duration(self.stats_interval_s, "receive.stats_interval_s")

    @property
    def subscribe_option(self) -> str | list[str]:
        """``subscribe`` as ``EnxRtc(subscribe=...)`` takes it."""
        return self.subscribe if isinstance(self.subscribe, str) else list(self.subscribe)


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
    receive: ReceiveConfig = field(default_factory=ReceiveConfig)

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
class RampStageConfig:
    """``{to: N, over: D}``: grow the swarm to N bots evenly over D; ``{hold: D}``: wait D."""

    to: int | None = None
    over: float | str = 0.0
    hold: float | str | None = None

    def __post_init__(self) -> None:
        if (self.to is None) == (self.hold is None):
            raise ValueError("a ramp stage is either {to: N, over: 10s} or {hold: 10s}")
        if self.hold is not None and self.over not in (0, 0.0):
            raise ValueError("'over' goes with 'to', not with 'hold'")
        if self.to is not None and self.to < 0:
            raise ValueError(f"to must be 0 or more bots, not {self.to}")
        self.stage()  # durations parse

    def stage(self) -> Stage:
        if self.hold is not None:
            return Stage(None, parse_duration(self.hold, "hold"))
        return Stage(self.to, parse_duration(self.over, "over"))


@dataclass(frozen=True, kw_only=True)
class RampConfig:
    """How fast bots join: at most ``rate`` joins a second (None: no limit), through ``stages``.

    In YAML, ``ramp: 20`` is ``{rate: 20}`` and ``ramp: [stages...]`` is ``{stages: [...]}``."""

    rate: float | None = None
    stages: list[RampStageConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.rate is not None and self.rate <= 0:
            raise ValueError(f"rate must be more than 0 joins per second, not {self.rate:g}")


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    server: Literal["embedded"] | None = None
    token: str | None = None
    token_file: str | None = None
    token_url: str | None = None
    api_url: str = DEFAULT_API_URL
    app_id: str | None = None
    app_key: str | None = None
    room_id: str | None = None
    rooms: int | list[str] | None = None
    """A number: create that many rooms (embedded server or REST); a list: these room ids."""
    bots_per_room: int | None = None
    embedded: EmbeddedConfig = field(default_factory=EmbeddedConfig)
    ramp: RampConfig = field(default_factory=RampConfig)
    join_retries: int = 0
    join_backoff: float | str = 1.0
    workers: int | Literal["auto"] = 1
    shared_media: bool = True
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    metrics_port: int | None = None
    """Serve /metrics, /healthz, /readyz here (default: $ENX_METRICS_PORT; unset: off)."""
    metrics_host: str | None = None
    report_dir: str | None = None
    """Write report.json and report.html here at the end (default: $ENX_REPORT_DIR)."""
    defaults: dict[str, Any] = field(default_factory=dict)
    bots: list[BotConfig] = field(default_factory=list)
    path: str = ""
    issued_tokens: tuple[str, ...] = field(default=(), init=False, repr=False)
    """The tokens of ``token_file``, one per bot in order."""
    shard_index: int = field(default=0, init=False)
    shard_count: int = field(default=1, init=False)
    """This process runs the bots ``i`` with ``i % shard_count == shard_index`` (ENX_SHARD_*)."""

    def __post_init__(self) -> None:
        if self.join_retries < 0:
            raise ValueError(f"join_retries must be 0 or more, not {self.join_retries}")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics_port {self.metrics_port} is not a TCP port (0-65535)")
        parse_duration(self.join_backoff, "join_backoff")
        if isinstance(self.workers, int) and self.workers < 1:
            raise ValueError(f"workers must be 1 or more (or auto), not {self.workers}")
        if self.bots_per_room is not None and self.bots_per_room < 1:
            raise ValueError(f"bots_per_room must be 1 or more, not {self.bots_per_room}")
        if isinstance(self.rooms, int) and self.rooms < 1:
            raise ValueError(f"rooms must be 1 or more (or a list of room ids), not {self.rooms}")
        if isinstance(self.rooms, tuple | list) and not self.rooms:
            raise ValueError("rooms is an empty list: give room ids, or a number of rooms to create")

    @functools.cached_property
    def mode(self) -> Literal["embedded", "token", "token_file", "token_url", "credentials"]:
        if self.server == "embedded":
            return "embedded"
        if self.token or any(b.token for b in self.bots):
            return "token"
        if self.token_file:
            return "token_file"
        if self.token_url:
            return "token_url"
        return "credentials"

    @property
    def backoff(self) -> Backoff:
        return Backoff(first=parse_duration(self.join_backoff, "join_backoff"))

    def schedule(self) -> RampSchedule:
        return RampSchedule(len(self.bots), self.ramp.rate, [s.stage() for s in self.ramp.stages])

    @property
    def room_ids(self) -> list[str]:
        """The rooms named in the config (``rooms`` list or ``room_id``), not created ones."""
        if isinstance(self.rooms, tuple | list):
            return list(self.rooms)
        return [self.room_id] if self.room_id else []

    @property
    def creates_rooms(self) -> bool:
        return isinstance(self.rooms, int)

    def my_bots(self) -> list[tuple[int, BotConfig]]:
        """``(global index, bot)`` of the bots this process runs."""
        return [(i, b) for i, b in enumerate(self.bots) if i % self.shard_count == self.shard_index]

    def room_of(self, index: int, room_count: int) -> int:
        """Which of ``room_count`` rooms bot ``index`` joins: consecutive blocks of
        ``bots_per_room`` (default: as even as possible)."""
        per_room = self.bots_per_room or -(-len(self.bots) // max(1, room_count))
        return min(index // max(1, per_room), room_count - 1)


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
    entries = []
    for i, bot in enumerate(bots):
        if not isinstance(bot, dict):
            raise ConfigError(f"{label}: bots[{i}] must be a mapping")
        entries.append(_merge(defaults, bot))
    ramp = data.get("ramp")
    if isinstance(ramp, int | float) and not isinstance(ramp, bool):
        ramp = {"rate": ramp}
    elif isinstance(ramp, list):
        ramp = {"stages": ramp}
    # bots are validated and expanded below; the defaults through the bots they were merged into
    data = {**data, "bots": [], "defaults": {}, **({"ramp": ramp} if "ramp" in data else {})}
    try:
        cfg = build(AgentConfig, data, "")
        expanded = [bot for i, entry in enumerate(entries) for bot in _expand(entry, f"bots[{i}]", label)]
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from None
    _set(cfg, "bots", expanded)
    _set(cfg, "path", label)
    names = Counter(b.name for b in cfg.bots)
    dupes = sorted(n for n, k in names.items() if k > 1)
    if dupes:
        shown = ", ".join(dupes[:5]) + (f" and {len(dupes) - 5} more" if len(dupes) > 5 else "")
        raise ConfigError(f"{label}: bot names must be unique; repeated: {shown}")
    _read_shard(cfg, env, label)
    _check_sources(cfg, label)
    _check_rooms(cfg, label)
    try:
        cfg.schedule()
    except ValueError as exc:
        raise ConfigError(f"{label}: ramp: {exc}") from None
    return cfg


def _expand(entry: dict[str, Any], where: str, label: str) -> list[BotConfig]:
    """One bot entry as the bots it stands for: ``count`` copies named from ``{i}`` (1-based),
    each from one of the weighted ``variants`` (exact proportions, interleaved)."""
    entry = dict(entry)
    count = entry.pop("count", 1)
    variants = entry.pop("variants", None)
    if isinstance(count, bool) or not isinstance(count, int):
        raise ConfigError(f"{where}.count must be a whole number, not {count!r}")
    if count < 1:
        raise ConfigError(f"{where}.count must be 1 or more, not {count}: leave the bot out to run none")
    if variants is None:
        templates, weights = [build(BotConfig, entry, where)], [1.0]
    else:
        if not isinstance(variants, list) or not variants:
            raise ConfigError(f"{where}.variants must be a non-empty list of bot settings with a weight")
        templates, weights = [], []
        for k, variant in enumerate(variants):
            at = f"{where}.variants[{k}]"
            if not isinstance(variant, dict):
                raise ConfigError(f"{at} must be a mapping")
            variant = dict(variant)
            weight = variant.pop("weight", 1)
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
                raise ConfigError(f"{at}.weight must be a number more than 0, not {weight!r}")
            weights.append(float(weight))
            templates.append(build(BotConfig, _merge(entry, variant), at))
    for t in templates:
        _resolve_media_file(t, label)
    name = templates[0].name
    if count > 1 and "{i" not in name:
        raise ConfigError(
            f"{where}.name {name!r} stands for {count} bots but has no {{i}}: write e.g. '{name}-{{i}}'"
        )
    out = []
    for j, k in enumerate(_spread(weights, count), start=1):
        t = templates[k]
        out.append(
            dataclasses.replace(
                t,
                name=_numbered(t.name, j, f"{where}.name"),
                user_ref=_numbered(t.user_ref, j, f"{where}.user_ref"),
            )
        )
    return out


def _numbered(text: str, i: int, where: str) -> str:
    if "{" not in text and "}" not in text:
        return text
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
        if any(f != "i" for f in fields):
            raise ValueError
        return text.format(i=i)
    except (ValueError, IndexError, KeyError):
        raise ConfigError(
            f"{where} {text!r}: only {{i}} (the bot's number, e.g. {{i}} or {{i:03}}) may be in braces"
        ) from None


def _spread(weights: list[float], count: int) -> list[int]:
    """Which variant each of ``count`` bots gets: smooth weighted round robin, so the counts are
    the weights' proportions rounded and the variants are interleaved (deterministic)."""
    total = sum(weights)
    current = [0.0] * len(weights)
    out = []
    for _ in range(count):
        for k, w in enumerate(weights):
            current[k] += w
        best = max(range(len(weights)), key=current.__getitem__)
        current[best] -= total
        out.append(best)
    return out


def _resolve_media_file(bot: BotConfig, label: str) -> None:
    if bot.media.kind == "file" and bot.media.file and not Path(bot.media.file).is_absolute():
        base = Path(label).resolve().parent if Path(label).exists() else Path.cwd()
        candidate = base / bot.media.file
        if not Path(bot.media.file).exists() and candidate.exists():
            _set(bot.media, "file", str(candidate))


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def _read_shard(cfg: AgentConfig, env: Mapping[str, str], label: str) -> None:
    index, count = env.get("ENX_SHARD_INDEX", ""), env.get("ENX_SHARD_COUNT", "")
    if not index and not count:
        return
    if not (index.isdigit() and count.isdigit()) or not 0 <= int(index) < int(count):
        raise ConfigError(
            f"{label}: ENX_SHARD_INDEX={index!r} and ENX_SHARD_COUNT={count!r} must both be set, "
            "as whole numbers with 0 <= index < count"
        )
    _set(cfg, "shard_index", int(index))
    _set(cfg, "shard_count", int(count))


def _check_sources(cfg: AgentConfig, label: str) -> None:
    if cfg.mode == "embedded":
        return
    if cfg.mode == "token":
        without = [b.name for b in cfg.bots if not b.token]
        if cfg.token and len(cfg.bots) > 1 and without:
            raise ConfigError(
                f"{label}: one token serves one bot (tokens are single use), but "
                f"{len(cfg.bots)} bots share it: give each bot its own token, use a token_file, "
                "or use credentials"
            )
        if not cfg.token and without:
            shown = ", ".join(without[:5]) + (f" and {len(without) - 5} more" if len(without) > 5 else "")
            raise ConfigError(f"{label}: bot(s) {shown} have no token")
        return
    if cfg.mode == "token_file":
        _set(cfg, "issued_tokens", _read_tokens(cfg, label))
        return
    if cfg.mode == "token_url":
        if not cfg.token_url or not cfg.token_url.startswith(("http://", "https://")):
            raise ConfigError(f"{label}.token_url must start with http:// or https://, not {cfg.token_url!r}")
        if not cfg.room_ids and not (cfg.creates_rooms and cfg.app_id and cfg.app_key):
            raise ConfigError(
                f"{label}: token_url needs the room to ask tokens for: set room_id (ENX_ROOM_ID) or "
                "rooms (a list of room ids)"
            )
        return
    missing = [k for k in ("app_id", "app_key") if not getattr(cfg, k)]
    if not cfg.room_id and not cfg.rooms:
        missing.append("room_id")
    if missing:
        raise ConfigError(
            f"{label}: no way into a room: set ENX_TOKEN (token), or ENX_APP_ID, ENX_APP_KEY "
            f"and ENX_ROOM_ID (credentials; missing: {', '.join(missing)}), "
            "or write 'server: embedded'"
        )
    if not cfg.api_url.startswith(("http://", "https://")):
        raise ConfigError(f"{label}.api_url must start with http:// or https://, not {cfg.api_url!r}")


def _read_tokens(cfg: AgentConfig, label: str) -> tuple[str, ...]:
    assert cfg.token_file
    path = Path(cfg.token_file)
    if not path.is_absolute() and not path.exists() and Path(label).exists():
        path = Path(label).resolve().parent / path
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"{label}: token_file {cfg.token_file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{label}: token_file {cfg.token_file} cannot be read: {reason}") from None
    tokens = tuple(t for t in (line.strip() for line in lines) if t and not t.startswith("#"))
    if len(tokens) < len(cfg.bots):
        raise ConfigError(
            f"{label}: token_file {cfg.token_file} has {len(tokens)} token(s) for {len(cfg.bots)} bots: "
            "tokens are single use, issue one per bot (one a line)"
        )
    return tokens


def _check_rooms(cfg: AgentConfig, label: str) -> None:
    if cfg.rooms is not None and cfg.room_id:
        raise ConfigError(f"{label}: give room_id or rooms, not both")
    if cfg.mode in ("token", "token_file") and (cfg.rooms is not None or cfg.bots_per_room):
        raise ConfigError(f"{label}: rooms and bots_per_room do not apply to tokens, which name their room")
    if cfg.creates_rooms and cfg.mode != "embedded" and not (cfg.app_id and cfg.app_key):
        raise ConfigError(
            f"{label}: rooms: {cfg.rooms} creates rooms through the REST API, which needs app_id and "
            "app_key (ENX_APP_ID/ENX_APP_KEY); or list existing room ids"
        )
    room_count = cfg.rooms if isinstance(cfg.rooms, int) else len(cfg.room_ids) or 1
    if cfg.bots_per_room and room_count * cfg.bots_per_room < len(cfg.bots):
        raise ConfigError(
            f"{label}: {room_count} room(s) x {cfg.bots_per_room} bots_per_room hold "
            f"{room_count * cfg.bots_per_room} bots, but the config has {len(cfg.bots)}: "
            "raise rooms or bots_per_room"
        )
