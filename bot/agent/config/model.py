"""The agent's YAML config as validated dataclasses (``load.py`` reads a file into them).

A config names exactly one way to get into a room: ``server: embedded`` (start the local
room server in this process), a ``token`` (default ``${ENX_TOKEN}``), a ``token_file`` of
pre-issued tokens, a ``token_url`` (the user's own app server), or credentials (``api_url``,
``app_id``, ``app_key``, ``room_id``/``rooms``) from which each bot mints its own token.
``local_info`` and ``room_info`` are the SDK's own ``LocalInfo``/``RoomInfo``, whose fields carry
EnableX's spelling as their YAML key (``audioMuted``) so EnableX users recognise them.

A bot entry may stand for many bots (``count: 200`` with ``name: load-{i}``), each drawn from
weighted ``variants``; the config's ``bots`` is the expanded list, in order, and a bot's
position in it is its global index (the ramp's order and the ``ENX_SHARD_INDEX`` slice).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.rtc import LocalInfo, RoomInfo

from ..quality.config import QualityConfig
from ..rules.policy import FallbackSettings
from ..rules.ramp import Backoff, RampSchedule, Stage, parse_duration
from .chat import ReplyConfig
from .room_control import ModerateConfig
from .scenario import ScenarioStep, check_scenario

DEFAULT_API_URL = "https://api.enablex.io/video/v2"


MAX_ROOMS = 2_000
"""Rooms one config may create (``rooms: N``): a room holds at least one bot, and one config at
most ``MAX_BOTS`` (load.py) of them, in rooms of ten or more in practice."""


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


TIMEOUT_MS_FROM = 1000
"""A ``room_info.timeout_interval`` this large is in milliseconds (the SDK's rule for the key)."""


def check_room_info(info: RoomInfo) -> RoomInfo:
    """The agent's checks of ``room_info`` (the SDK's ``RoomInfo`` checks only dictionaries), with
    a millisecond ``timeout_interval`` read as the SDK reads it."""
    if info.number_of_attempts < 0:
        raise ValueError("room_info.number_of_attempts must be 0 or more")
    if info.timeout_interval <= 0:
        raise ValueError("room_info.timeout_interval must be more than 0 seconds")
    if not 0 < info.wait_timeout_s < float("inf"):
        raise ValueError("room_info.wait_timeout_s must be more than 0 seconds")
    if info.timeout_interval >= TIMEOUT_MS_FROM:
        return dataclasses.replace(info, timeout_interval=info.timeout_interval / 1000)
    return info


CHECKS: Mapping[type, Callable[[Any], Any]] = {RoomInfo: check_room_info}
"""What ``schema.build`` runs on the SDK's option types once built from YAML."""


@dataclass(frozen=True, kw_only=True)
class PolicyConfig:
    """How a bot adapts: ``bandwidth_fallback`` goes audio-only on a room bandwidth alert."""

    bandwidth_fallback: FallbackSettings = field(default_factory=FallbackSettings)


SubscribeMode = Literal["none", "all", "audio", "talkers"]

QUALITY_STATS_S = 2.0
"""``stats_interval_s`` when ``receive.quality`` is on and it is not set: scores need statistics."""


@dataclass(frozen=True, kw_only=True)
class ReceiveConfig:
    """What the bot receives and where it goes: ``subscribe`` ``none`` (default), ``all``,
    ``audio`` (audio only), ``talkers`` (video for the room's active talkers, audio for the
    rest) or a list of participant names; at most ``max_video`` streams with
    video (like EnableX's active talkers); each received stream goes to a ``sink``: ``discard``
    (count, never decode), ``record`` (files under ``record_dir``, no re-encoding, a new file
    every ``rotate_s``) or ``frames`` (decode and drop: the CPU of a real viewer);
    ``stats_interval_s`` logs ``stream_stats`` per received stream this often; ``quality``
    judges every received stream (``bot.agent.quality``: frozen, black, silent, MOS); chat and
    user data are logged (``log_messages``: with their text) and chat may be answered (``reply``)."""

    subscribe: SubscribeMode | list[str] = "none"
    max_video: int | None = None
    sink: Literal["discard", "record", "frames"] = "discard"
    record_dir: str = "recordings"
    rotate_s: float | str | None = None
    stats_interval_s: float | str | None = None
    log_messages: bool = True
    """Log the text of received chat and user data (cut at 200 characters); false: sizes only."""
    reply: ReplyConfig | None = None
    quality: QualityConfig | None = None
    """Judge every received stream (``bot.agent.quality``); needs ``sink: discard``."""

    def __post_init__(self) -> None:
        if self.quality is not None and self.sink != "discard":
            raise ValueError(f"receive.quality judges with sink: discard, not with sink: {self.sink}")
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
            return None if self.quality is None else QUALITY_STATS_S
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
    scenario: list[ScenarioStep] = field(default_factory=list)
    """What the bot does while in the room (``bot.agent.config.scenario``)."""
    request_floor: bool = True
    """Lecture mode: a participant that publishes asks for the floor on joining."""
    moderate: ModerateConfig = field(default_factory=ModerateConfig)
    """A moderator's answers to knocking participants and floor requests."""

    def __post_init__(self) -> None:
        check_scenario(tuple(self.scenario))
        if self.moderate != ModerateConfig() and self.role != "moderator":
            raise ValueError(f"moderate is for moderators; bot {self.name!r} is a {self.role}")
        if not self.name.strip():
            raise ValueError("bot name is empty")
        if self.join_delay < 0:
            raise ValueError("join_delay must be 0 or more seconds")
        if self.stay is not None and self.stay <= 0:
            raise ValueError("stay must be more than 0 seconds (or omitted: until a signal)")
        if self.receive.reply is not None and not self.local_info.data:
            raise ValueError("receive.reply sends chat: it needs local_info: {data: true}")

    def join_local_info(self) -> LocalInfo:
        """``local_info`` as this bot joins with it: named after the bot unless it says otherwise,
        no video in an audio-only room, nothing published by a viewer."""
        info = self.local_info
        if self.role == "viewer":
            return dataclasses.replace(info, name=info.name or self.name, audio=False, video=False)
        video = info.video and not self.room_info.audio_only
        return dataclasses.replace(info, name=info.name or self.name, video=video)


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
    log_room_events: Literal["auto", "every_bot", "once_per_room"] = "auto"
    """Who logs another participant's join/leave and streams: every bot that sees it, or the
    first bot of the process per room (``auto``: every bot up to 10 bots in the process)."""
    metrics_port: int | None = None
    """Serve /metrics, /healthz, /readyz here (default: $ENX_METRICS_PORT; unset: off)."""
    metrics_host: str | None = None
    report_dir: str | None = None
    """Write report.json and report.html here at the end (default: $ENX_REPORT_DIR)."""
    seed: int | None = None
    """Seeds the scenarios' random times (and nothing else): the same seed, the same timelines."""
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
        if isinstance(self.rooms, int) and self.rooms > MAX_ROOMS:
            raise ValueError(f"rooms: {self.rooms:,} is more than the {MAX_ROOMS:,} one config may create")
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

    @functools.cached_property
    def digest(self) -> str:
        """What the config asks for, hashed: the same for every shard of one load test (the
        shard fields and the file's path are left out), so ``report merge`` can refuse to add
        up runs of different configs. 16 hex digits of SHA-256; secrets in it stay in it."""
        fields = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("path", "shard_index", "shard_count")
        }
        text = json.dumps(_plain(fields), sort_keys=True, default=repr)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def my_bots(self) -> list[tuple[int, BotConfig]]:
        """``(global index, bot)`` of the bots this process runs."""
        return [(i, b) for i, b in enumerate(self.bots) if i % self.shard_count == self.shard_index]

    def room_of(self, index: int, room_count: int) -> int:
        """Which of ``room_count`` rooms bot ``index`` joins: consecutive blocks of
        ``bots_per_room`` (default: as even as possible)."""
        per_room = self.bots_per_room or -(-len(self.bots) // max(1, room_count))
        return min(index // max(1, per_room), room_count - 1)


def _plain(value: Any) -> Any:
    """Dataclasses, tuples and mappings as JSON-able values (for :attr:`AgentConfig.digest`)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
