"""Read a config file: interpolate, validate into the model, expand counts and variants, and
check that the config names one way into a room.
"""

from __future__ import annotations

import dataclasses
import os
import string
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .interpolate import interpolate
from .model import CHECKS, AgentConfig, BotConfig
from .schema import build
from .yaml_guard import DocumentTooLarge, load_document

MAX_BOTS = 20_000
"""Bots one config may stand for, every shard together: ~250 shared-media bots fit on a core
(BENCHMARKS.md), so 20,000 is already dozens of machines; more is a typo or a mistake."""


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
        raw = load_document(text)
    except DocumentTooLarge as exc:
        raise ConfigError(f"config file {label} is refused: {exc}") from None
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
    total = sum(c for e in entries if isinstance(c := e.get("count", 1), int) and not isinstance(c, bool))
    if total > MAX_BOTS:  # before any bot is built: a billion is refused at once, not after minutes
        raise ConfigError(
            f"{label}: the bots' counts add up to {total:,}, over the {MAX_BOTS:,} one config may run: "
            "split the load into several configs (or shards of one with fewer bots)"
        )
    ramp = data.get("ramp")
    if isinstance(ramp, int | float) and not isinstance(ramp, bool):
        ramp = {"rate": ramp}
    elif isinstance(ramp, list):
        ramp = {"stages": ramp}
    # bots are validated and expanded below; the defaults through the bots they were merged into
    data = {**data, "bots": [], "defaults": {}, **({"ramp": ramp} if "ramp" in data else {})}
    try:
        cfg = build(AgentConfig, data, "", CHECKS)
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
    _check_rejoins(cfg, label)
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
        templates, weights = [build(BotConfig, entry, where, CHECKS)], [1.0]
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
            templates.append(build(BotConfig, _merge(entry, variant), at, CHECKS))
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


def _check_rejoins(cfg: AgentConfig, label: str) -> None:
    """A scenario's ``rejoin`` joins again with a fresh token: a given token is single use."""
    if cfg.mode not in ("token", "token_file"):
        return
    for bot in cfg.bots:
        if any(step.do == "rejoin" for step in bot.scenario):
            raise ConfigError(
                f"{label}: bot {bot.name!r}: its scenario rejoins, which needs a fresh token each time; "
                f"with {cfg.mode} tokens use app_id/app_key, token_url or server: embedded instead"
            )


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
