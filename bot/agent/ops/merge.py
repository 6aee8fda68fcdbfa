"""``enx-bot report merge``: the reports of many shards (worker processes, k8s pods) as one.

Each process of a load test writes its own ``report[-<shard>].json`` (``meta``: shard index and
count, config digest, version, host). Merging adds up what adds up and recomputes the rest from
the pooled data, never from the shards' summaries: join latency percentiles come from every
bot's own latency (the p99 of the merge is the p99 of all samples, not an average of p99s);
timelines are moved onto one wall clock (the earliest shard's start is t = 0). The merged
report says which shards it holds, which are missing (an index below the shard count with no
report) and which failed (unreadable, or ended by an error).

Shards of different configs (or versions) do not add up to anything: refused unless
``allow_mixed``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .report import MEDIA_KEYS, SCHEMA, iso_utc, room_breakdown
from .report_stats import histogram, latency_summary

FAULT_KEYS = ("reconnects", "bandwidth_alerts", "fallbacks", "met", "survived")
GOOD_ENDINGS = frozenset({"completed", "SIGTERM", "SIGINT"})
MAX_REPORT_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Shard:
    path: Path
    data: dict[str, Any]

    @property
    def meta(self) -> dict[str, Any]:
        meta = self.data.get("meta")
        return meta if isinstance(meta, dict) else {}

    @property
    def index(self) -> int | None:
        index = self.meta.get("shard_index")
        return index if isinstance(index, int) else None

    @property
    def started(self) -> float:
        return _epoch(self.data["started_at"])

    @property
    def ended(self) -> float:
        return self.started + float(self.data.get("duration_s") or 0.0)


@dataclass
class Merged:
    data: dict[str, Any]
    missing: list[int]
    failed: list[dict[str, str]]

    @property
    def complete(self) -> bool:
        return not self.missing and not self.failed


def find_reports(inputs: Sequence[str | Path]) -> list[Path]:
    """The report files named, or found (``report*.json``, at any depth) in the folders named."""
    found: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("report*.json") if p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise ConfigError(
                f"{path}: no such file or folder (give report JSON files or folders holding them)"
            )
    if not found:
        names = ", ".join(str(p) for p in inputs)
        raise ConfigError(f"no report*.json in {names}: point at the folders the shards wrote (report_dir)")
    unique: dict[Path, Path] = {}
    for p in found:
        unique.setdefault(p.resolve(), p)  # a file named twice (or inside a folder named) once
    return list(unique.values())


def load_shards(paths: Iterable[Path]) -> tuple[list[Shard], list[dict[str, str]]]:
    """The readable shard reports, and ``{file, error}`` for each that is not one."""
    shards: list[Shard] = []
    failed: list[dict[str, str]] = []
    for path in paths:
        try:
            if path.stat().st_size > MAX_REPORT_BYTES:
                raise ValueError(f"larger than {MAX_REPORT_BYTES // 2**20} MiB")
            data = json.loads(path.read_text(encoding="utf-8"))
            _check_shard(data)
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            failed.append({"file": str(path), "error": str(exc)[:300] or type(exc).__name__})
            continue
        shards.append(Shard(path, data))
    return shards, failed


def _check_shard(data: object) -> None:
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f"not an enx-bot report (schema {SCHEMA})")
    if "shards" in data:
        raise ValueError("a merged report: merge the shards' own reports")
    for key, kind in (("summary", dict), ("bots", list), ("started_at", str), ("series", dict)):
        if not isinstance(data.get(key), kind):
            raise ValueError(f"its {key!r} is missing or not a {kind.__name__}")
    _epoch(data["started_at"])
    for bot in data["bots"]:
        if not isinstance(bot, dict) or not isinstance(bot.get("name"), str):
            raise ValueError("a bot entry without a name")


def merge_reports(inputs: Sequence[str | Path], *, allow_mixed: bool = False) -> Merged:
    """Find, load and merge. ConfigError (exit 2) when nothing can be merged or the configs differ."""
    paths = find_reports(inputs)
    shards, failed = load_shards(paths)
    if not shards:
        reasons = "; ".join(f"{f['file']}: {f['error']}" for f in failed)
        raise ConfigError(f"no readable shard report ({reasons})")
    _refuse_mixed(shards, allow_mixed)
    shards, duplicates = _dedupe(shards)
    failed += [
        {"file": str(s.path), "error": f"shard {s.index} again (kept the later run)"} for s in duplicates
    ]
    for s in shards:
        if s.data.get("ended_by") not in GOOD_ENDINGS:
            failed.append({"file": str(s.path), "error": f"the run ended by {s.data.get('ended_by')!r}"})
    counts = [c for c in (s.meta.get("shard_count") for s in shards) if isinstance(c, int) and c > 0]
    count = max(counts) if counts else len(shards)
    present = {s.index for s in shards if s.index is not None}
    missing = sorted(set(range(count)) - present) if counts else []
    return Merged(_merged(shards, count, missing, failed), missing, failed)


def _refuse_mixed(shards: Sequence[Shard], allow_mixed: bool) -> None:
    for key in ("config_digest", "version"):
        values = {str(s.meta.get(key)) for s in shards}
        if len(values) > 1 and not allow_mixed:
            by_value = "; ".join(
                f"{v}: {', '.join(str(s.path) for s in shards if str(s.meta.get(key)) == v)}"
                for v in sorted(values)
            )
            raise ConfigError(
                f"the shards ran different {key.replace('_', ' ')}s ({by_value}): merge one load test at a "
                "time, or pass --allow-mixed"
            )


def _dedupe(shards: Sequence[Shard]) -> tuple[list[Shard], list[Shard]]:
    """One report per shard index: a retried pod's later run wins."""
    kept: dict[int | str, Shard] = {}
    dropped: list[Shard] = []
    for s in sorted(shards, key=lambda s: s.started):
        key: int | str = s.index if s.index is not None else str(s.path)
        if key in kept:
            dropped.append(kept[key])
        kept[key] = s
    return sorted(kept.values(), key=lambda s: (s.index is None, s.index or 0, str(s.path))), dropped


def _merged(
    shards: Sequence[Shard], count: int, missing: list[int], failed: list[dict[str, str]]
) -> dict[str, Any]:
    t0 = min(s.started for s in shards)
    t_end = max(s.ended for s in shards)
    bots: list[dict[str, Any]] = []
    rooms_seen: dict[str, dict[str, int]] = {}
    media = dict.fromkeys(MEDIA_KEYS, 0)
    faults = dict.fromkeys(FAULT_KEYS, 0)
    outcomes: dict[str, int] = {}
    data: dict[str, int] = {}
    scenario: dict[str, dict[str, int]] = {}
    target = 0
    for s in shards:
        offset = s.started - t0
        summary = s.data["summary"]
        target += int(summary.get("target") or 0)
        for key in MEDIA_KEYS:
            media[key] += int((summary.get("media") or {}).get(key) or 0)
        for key in FAULT_KEYS:
            faults[key] += int((summary.get("faults") or {}).get(key) or 0)
        for name, n in (summary.get("outcomes") or {}).items():
            outcomes[name] = outcomes.get(name, 0) + int(n)
        for key, n in (summary.get("data") or {}).items():
            data[key] = data.get(key, 0) + int(n)
        for action, results in (summary.get("scenario") or {}).items():
            mine = scenario.setdefault(action, {})
            for result, n in results.items():
                mine[result] = mine.get(result, 0) + int(n)
        for room, seen in (s.data.get("rooms") or {}).items():
            mine = rooms_seen.setdefault(room, {"participants": 0, "max_participants": 0})
            for key in mine:
                mine[key] = max(mine[key], int(seen.get(key) or 0))
        for bot in s.data["bots"]:
            timeline = [{**e, "t": round(float(e["t"]) + offset, 3)} for e in bot.get("timeline") or []]
            bots.append({**bot, "shard": s.index, "timeline": timeline})
    latencies = [b["join_latency_ms"] for b in bots if isinstance(b.get("join_latency_ms"), int | float)]
    edges, hist = histogram(latencies)
    endings = sorted({str(s.data.get("ended_by")) for s in shards})
    return {
        "schema": SCHEMA,
        "meta": {
            "merged_shards": len(shards),
            "shard_count": count,
            "config_digest": _one_or_mixed(s.meta.get("config_digest") for s in shards),
            "version": _one_or_mixed(s.meta.get("version") for s in shards),
        },
        "started_at": iso_utc(t0),
        "ended_at": iso_utc(t_end),
        "duration_s": round(t_end - t0, 3),
        "ended_by": endings[0] if len(endings) == 1 else "mixed: " + ", ".join(endings),
        "summary": {
            "target": target,
            "bots": len(bots),
            "joined": len(latencies),
            "outcomes": dict(sorted(outcomes.items())),
            "join_latency_ms": latency_summary(latencies),
            "media": media,
            "faults": faults,
            "data": data,
            "scenario": dict(sorted(scenario.items())),
        },
        "rooms": room_breakdown(bots, rooms_seen),
        "series": {"in_room": in_room_series(shards, t0, t_end)},
        "join_latency_histogram": {"edges_ms": edges, "counts": hist},
        "shards": [_shard_row(s, t0) for s in shards],
        "missing_shards": missing,
        "failed_shards": failed,
        "bots": bots,
    }


def in_room_series(shards: Sequence[Shard], t0: float, t_end: float) -> list[list[float]]:
    """The shards' ``[t, bots in a room]`` step series summed on one wall clock."""
    changes: list[tuple[float, int]] = []
    for s in shards:
        offset = s.started - t0
        previous = 0
        for t, n in s.data["series"].get("in_room") or []:
            if int(n) != previous:
                changes.append((round(float(t) + offset, 3), int(n) - previous))
                previous = int(n)
    changes.sort()
    series: list[list[float]] = [[0.0, 0]]
    n = 0
    for t, delta in changes:
        n += delta
        if series[-1][0] == t:
            series[-1][1] = n
        else:
            series.append([t, n])
    end = round(t_end - t0, 3)
    if end > series[-1][0] or len(series) == 1:
        series.append([end, n])
    return series


def _shard_row(s: Shard, t0: float) -> dict[str, Any]:
    summary = s.data["summary"]
    lat = summary.get("join_latency_ms") or {}
    return {
        "index": s.index,
        "file": str(s.path),
        "host": s.meta.get("host"),
        "version": s.meta.get("version"),
        "config_digest": s.meta.get("config_digest"),
        "started_at": s.data["started_at"],
        "offset_s": round(s.started - t0, 3),
        "duration_s": s.data.get("duration_s"),
        "ended_by": s.data.get("ended_by"),
        "bots": summary.get("bots"),
        "joined": summary.get("joined"),
        "outcomes": summary.get("outcomes"),
        "join_p50_ms": lat.get("p50"),
        "join_p99_ms": lat.get("p99"),
    }


def write_merged(merged: Merged, out: str | Path) -> tuple[Path, Path]:
    """``OUT/report.json`` + ``report.html``, or ``OUT`` itself when it ends in ``.json``."""
    from .report import write_report_files

    target = Path(out)
    if target.suffix == ".json":
        return write_report_files(merged.data, target.parent, target.stem)
    return write_report_files(merged.data, target, "report")


def _one_or_mixed(values: Iterable[object]) -> object:
    distinct = {json.dumps(v, sort_keys=True, default=str) for v in values}
    return json.loads(distinct.pop()) if len(distinct) == 1 else "mixed"


def _epoch(iso: str) -> float:
    try:
        return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except (TypeError, ValueError, AttributeError):
        raise ValueError(f"started_at {iso!r} is not an ISO time") from None
