"""``log_room_events``: in a room full of one process's bots, another participant's arrival and
departure is logged once, not once per bot that saw it (a swarm's log was quadratic)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from pathlib import Path

import pytest

from bot.agent.bot.room_log import AUTO_EVERY_BOT_MAX, REMEMBERED, RoomLog

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
server: embedded
embedded: {{host: 127.0.0.1, port: 0}}
log_room_events: {mode}
ramp: 10
defaults:
  local_info: {{audio: true, video: false}}
  media: {{kind: synthetic}}
bots:
  - name: stayer-{{i}}
    count: 3
    stay: 6
  - name: leaver
    join_delay: 1
    stay: 1.5
"""


def test_every_bot_logs_everything_and_once_per_room_logs_each_event_once() -> None:
    every = RoomLog("every_bot", bots=500)
    assert all(every.first("r", "user_connected", "c1") for _ in range(3))
    once = RoomLog("once_per_room")
    assert once.first("r", "user_connected", "c1")
    assert not once.first("r", "user_connected", "c1")
    assert once.first("other-room", "user_connected", "c1")  # rooms are apart
    assert once.first("r", "stream_added", 7) and not once.first("r", "stream_added", "7")
    assert once.first("r", "stream_removed", 7)
    assert once.first("r", "stream_added", 7), "a stream id back after its removal is news"
    assert once.first(None, "user_connected", "c1") and once.first(None, "user_connected", "c1")


def test_auto_is_every_bot_for_a_small_process_only() -> None:
    assert not RoomLog("auto", bots=AUTO_EVERY_BOT_MAX).once
    assert RoomLog("auto", bots=AUTO_EVERY_BOT_MAX + 1).once


def test_the_memory_is_bounded() -> None:
    once = RoomLog("once_per_room")
    for i in range(REMEMBERED + 10):
        once.first("r", "user_connected", i)
    assert len(once._seen) == REMEMBERED
    assert once.first("r", "user_connected", 0), "the oldest is forgotten first"


async def _run(tmp_path: Path, mode: str) -> list[dict[str, object]]:
    config = tmp_path / f"{mode}.yaml"
    config.write_text(CONFIG.format(mode=mode))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENX_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", str(config), "--log-format", "json",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    return [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]


@pytest.mark.slow
async def test_a_real_room_logs_each_arrival_and_departure_once(tmp_path: Path) -> None:
    events = await _run(tmp_path, "once_per_room")
    about_leaver = Counter(
        e["event"] for e in events if e.get("user") == "leaver" and e["event"] != "scenario_action"
    )
    # three bots saw the leaver come and go: one line each, from whichever bot saw it first
    assert about_leaver["user_connected"] == 1, about_leaver
    assert about_leaver["user_disconnected"] == 1, about_leaver
    assert about_leaver["stream_added"] == 1 and about_leaver["stream_removed"] == 1, about_leaver
    joined = [e for e in events if e["event"] == "user_connected"]
    assert len({e["user_id"] for e in joined}) == len(joined), "a participant's arrival logged twice"
    assert {e["bot"] for e in events if e["event"] == "room_connected"} == {
        "stayer-1", "stayer-2", "stayer-3", "leaver",
    }  # fmt: skip
