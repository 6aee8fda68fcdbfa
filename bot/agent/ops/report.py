"""The end-of-run report: JSON for machines, one self-contained HTML page for people.

:class:`RunRecorder` implements ``BotObserver`` and keeps, per bot, the state changes with
their times, the join latency, the outcome, the media totals and the faults it met. At the end
of a run (or on SIGTERM, after the bots left) :meth:`RunRecorder.write_reports` writes
``report.json`` and ``report.html``:

- JSON (``schema: enx-bot.report/1``): ``summary`` (outcomes, join latency percentiles in ms,
  media totals, faults and faults survived), ``bots`` (one entry per bot with its timeline),
  ``rooms``, ``series.in_room`` (``[t_s, bots in a room]`` at every change) and
  ``join_latency_histogram`` (``edges_ms``, ``counts``), and ``streams``: what monitoring bots
  judged (``report_quality``: MOS and video-score curves, frozen/black/silent/... bands).
- HTML: the same numbers, a step plot of bots in a room over time and a histogram of join
  latencies, drawn here as inline SVG, and a quality timeline per judged stream. No script, no
  external style sheet, font or image; a Content-Security-Policy forbids loading anything, so it
  renders the same offline.

A fault is a reconnect episode or an audio-only fallback (the bot entered ``reconnecting`` or
``audio-only``); it is survived when the bot came back to ``connected`` afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .observe import IN_ROOM, BotState, MediaTotals, NullObserver, as_state
from .report_html import render_html
from .report_quality import QualityTimelines
from .report_stats import histogram, latency_summary

SCHEMA = "enx-bot.report/1"
DATA_KEYS = ("chat_sent", "chat_received", "user_data_sent", "user_data_received")
"""Chat and custom data messages per bot and in the summary (``data``)."""
MEDIA_KEYS = ("sent_bytes", "sent_packets", "recv_bytes", "recv_packets", "lost")
FAULT_STATES = frozenset({BotState.RECONNECTING, BotState.AUDIO_ONLY})
OUTCOME_OF_STATE = {
    BotState.LEFT: "completed",
    BotState.FAILED: "join_failed",
    BotState.LOST: "lost",
}


@dataclass
class BotTimeline:
    name: str
    room: str | None = None
    scenario: dict[str, dict[str, int]] = field(default_factory=dict)  # action -> outcome -> n
    states: list[tuple[float, BotState]] = field(default_factory=list)
    join_latency_s: float | None = None
    outcome: str | None = None
    reason: str = ""
    reconnects: int = 0
    bandwidth_alerts: int = 0
    fallbacks: int = 0
    media: list[int] = field(default_factory=lambda: [0] * len(MEDIA_KEYS))
    data: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DATA_KEYS, 0))
    """Chat and user data messages: ``chat_sent``, ``chat_received``, ``user_data_sent``, ..."""

    @property
    def state(self) -> BotState | None:
        return self.states[-1][1] if self.states else None

    def faults(self) -> tuple[int, int]:
        """(fault episodes, of which survived)."""
        met = survived = 0
        prev: BotState | None = None
        for _, s in self.states:
            if s in FAULT_STATES and prev not in FAULT_STATES:
                met += 1
            if s is BotState.CONNECTED and prev in FAULT_STATES:
                survived += 1
            prev = s
        return met, survived

    def final_outcome(self) -> str:
        if self.outcome:
            return self.outcome
        s = self.state
        if s is None:
            return "not_started"
        return OUTCOME_OF_STATE.get(s, "running")


class RunRecorder(NullObserver):
    """Implements ``BotObserver``; ``write_reports(dir)`` at the end."""

    def __init__(
        self,
        target: int = 0,
        meta: Mapping[str, Any] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.target = target
        self.meta = dict(meta or {})
        self._clock = clock
        self._t0 = clock()
        self.started_at = wall()
        self._wall = wall
        self.bots: dict[str, BotTimeline] = {}
        self.rooms: dict[str, dict[str, int]] = {}
        self._media = MediaTotals()
        self._ended: tuple[float, float, str] | None = None  # (t, wall, ended_by)
        self._cause = ""
        self.quality = QualityTimelines()

    def _now(self) -> float:
        return self._clock() - self._t0

    def _bot(self, name: str) -> BotTimeline:
        b = self.bots.get(name)
        if b is None:
            b = self.bots[name] = BotTimeline(name)
        return b

    # ------------------------------------------------------------------ BotObserver

    def bot_state(self, bot: str, state: str) -> None:
        b = self._bot(bot)
        new = as_state(state)
        if b.state is not new:
            b.states.append((self._now(), new))

    def join_latency(self, bot: str, seconds: float) -> None:
        self._bot(bot).join_latency_s = max(0.0, seconds)

    def reconnect(self, bot: str) -> None:
        self._bot(bot).reconnects += 1

    def bandwidth_alert(self, bot: str) -> None:
        self._bot(bot).bandwidth_alerts += 1

    def fallback(self, bot: str) -> None:
        self._bot(bot).fallbacks += 1

    def media(
        self,
        bot: str,
        sent_bytes: int = 0,
        sent_packets: int = 0,
        recv_bytes: int = 0,
        recv_packets: int = 0,
        lost: int = 0,
    ) -> None:
        b = self._bot(bot)
        d = self._media.delta(bot, (sent_bytes, sent_packets, recv_bytes, recv_packets, lost))
        b.media = [a + x for a, x in zip(b.media, d, strict=True)]

    def data_message(self, bot: str, direction: str, kind: str, size: int) -> None:
        key = f"{kind}_{direction}"
        if key in DATA_KEYS:
            self._bot(bot).data[key] += 1

    def room_participants(self, room: str, n: int) -> None:
        r = self.rooms.setdefault(room, {"participants": 0, "max_participants": 0})
        r["participants"] = n
        r["max_participants"] = max(r["max_participants"], n)

    def bot_room(self, bot: str, room: str) -> None:
        self._bot(bot).room = room

    def scenario_action(self, bot: str, action: str, outcome: str) -> None:
        done = self._bot(bot).scenario.setdefault(action, {})
        done[outcome] = done.get(outcome, 0) + 1

    def outcome(self, bot: str, outcome: str, reason: str = "") -> None:
        b = self._bot(bot)
        b.outcome, b.reason = outcome, reason
        end_state = {"join_failed": BotState.FAILED, "lost": BotState.LOST}.get(outcome, BotState.LEFT)
        if b.state is not None and b.state is not end_state:
            b.states.append((self._now(), end_state))

    def stream_quality(self, bot: str, stream: str, sample: Mapping[str, object]) -> None:
        self.quality.sample(self._now(), bot, stream, sample)

    # ------------------------------------------------------------------ the report

    def note_end_cause(self, cause: str) -> None:
        """Why the run is ending, said before it ends (the signal handler: ``SIGTERM``);
        :meth:`finish` records it unless told otherwise."""
        self._cause = self._cause or cause

    def finish(self, ended_by: str | None = None) -> None:
        """Mark the end of the run (the first call counts): ``ended_by`` if given, else the
        noted cause, else ``completed``."""
        if self._ended is None:
            self._ended = (self._now(), self._wall(), ended_by or self._cause or "completed")

    def in_room_series(self, until: float) -> list[tuple[float, int]]:
        """``(t, bots in a room)`` at 0, at every change, and at ``until``."""
        events: list[tuple[float, int]] = []
        for b in self.bots.values():
            was = False
            for t, s in b.states:
                now = s in IN_ROOM
                if now != was:
                    events.append((t, 1 if now else -1))
                was = now
        events.sort()
        series = [(0.0, 0)]
        n = 0
        for t, d in events:
            n += d
            t = round(t, 3)
            if series[-1][0] == t:
                series[-1] = (t, n)
            else:
                series.append((t, n))
        end = round(max(until, series[-1][0]), 3)
        if end > series[-1][0] or len(series) == 1:
            series.append((end, n))
        return series

    def to_dict(self) -> dict[str, Any]:
        t_end, wall_end, ended_by = self._ended or (self._now(), self._wall(), "running")
        bots = []
        outcomes: dict[str, int] = {}
        latencies: list[float] = []
        media_total = [0] * len(MEDIA_KEYS)
        data_total = dict.fromkeys(DATA_KEYS, 0)
        scenario_total: dict[str, dict[str, int]] = {}
        faults_met = faults_survived = reconnects = alerts = fallbacks = 0
        for b in self.bots.values():
            met, survived = b.faults()
            outcome = b.final_outcome()
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if b.join_latency_s is not None:
                latencies.append(b.join_latency_s * 1000)
            media_total = [a + x for a, x in zip(media_total, b.media, strict=True)]
            data_total = {k: data_total[k] + b.data[k] for k in DATA_KEYS}
            for action, outcomes_of in b.scenario.items():
                for result, n in outcomes_of.items():
                    total = scenario_total.setdefault(action, {})
                    total[result] = total.get(result, 0) + n
            faults_met += met
            faults_survived += survived
            reconnects += b.reconnects
            alerts += b.bandwidth_alerts
            fallbacks += b.fallbacks
            bots.append(
                {
                    "name": b.name,
                    "room": b.room,
                    "outcome": outcome,
                    "reason": b.reason,
                    "state": b.state.value if b.state else None,
                    "join_latency_ms": _ms_of(b.join_latency_s),
                    "media": dict(zip(MEDIA_KEYS, b.media, strict=True)),
                    "data": dict(b.data),
                    "scenario": b.scenario,
                    "faults": {
                        "reconnects": b.reconnects,
                        "bandwidth_alerts": b.bandwidth_alerts,
                        "fallbacks": b.fallbacks,
                        "met": met,
                        "survived": survived,
                    },
                    "timeline": [{"t": round(t, 3), "state": s.value} for t, s in b.states],
                }
            )
        edges, counts = histogram(latencies)
        return {
            "schema": SCHEMA,
            "meta": self.meta,
            "started_at": iso_utc(self.started_at),
            "ended_at": iso_utc(wall_end),
            "duration_s": round(t_end, 3),
            "ended_by": ended_by,
            "summary": {
                "target": self.target,
                "bots": len(bots),
                "joined": len(latencies),
                "outcomes": dict(sorted(outcomes.items())),
                "join_latency_ms": latency_summary(latencies),
                "media": dict(zip(MEDIA_KEYS, media_total, strict=True)),
                "data": data_total,
                "scenario": dict(sorted(scenario_total.items())),
                "faults": {
                    "reconnects": reconnects,
                    "bandwidth_alerts": alerts,
                    "fallbacks": fallbacks,
                    "met": faults_met,
                    "survived": faults_survived,
                },
            },
            "rooms": room_breakdown(bots, self.rooms),
            "series": {"in_room": [[t, n] for t, n in self.in_room_series(t_end)]},
            "join_latency_histogram": {"edges_ms": edges, "counts": counts},
            "bots": bots,
            "streams": self.quality.to_list(t_end),
        }

    def write_reports(self, directory: str | os.PathLike[str], stem: str = "report") -> tuple[Path, Path]:
        """Write ``{stem}.json`` and ``{stem}.html`` into ``directory`` (created if missing),
        each atomically (a kill mid-write leaves the old file or none). Ends the run if
        :meth:`finish` was not called. Returns both paths."""
        self.finish()
        return write_report_files(self.to_dict(), directory, stem)


def write_report_files(
    data: Mapping[str, Any], directory: str | os.PathLike[str], stem: str
) -> tuple[Path, Path]:
    """``{stem}.json`` and ``{stem}.html`` of a report dict, each written atomically."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / f"{stem}.json", out / f"{stem}.html"
    _write_atomic(json_path, json.dumps(data, indent=2) + "\n")
    _write_atomic(html_path, render_html(data))
    return json_path, html_path


def room_breakdown(bots: list[dict[str, Any]], seen: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    """Per room: what our bots saw of it (``participants``, ``max_participants``) and how our
    bots in it did (``bots``, ``joined``, ``outcomes``, ``join_latency_ms``)."""
    rooms: dict[str, Any] = {}
    names = sorted({*seen, *(b["room"] for b in bots if b.get("room"))})
    for room in names:
        mine = [b for b in bots if b.get("room") == room]
        latencies = [b["join_latency_ms"] for b in mine if b["join_latency_ms"] is not None]
        outcomes: dict[str, int] = {}
        for b in mine:
            outcomes[b["outcome"]] = outcomes.get(b["outcome"], 0) + 1
        rooms[room] = {
            "participants": seen.get(room, {}).get("participants", 0),
            "max_participants": seen.get(room, {}).get("max_participants", 0),
            "bots": len(mine),
            "joined": len(latencies),
            "outcomes": dict(sorted(outcomes.items())),
            "join_latency_ms": latency_summary(latencies),
        }
    return rooms


def _ms_of(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def iso_utc(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
