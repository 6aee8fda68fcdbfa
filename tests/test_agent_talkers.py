"""The agent's ``receive.subscribe: talkers`` and its ``active_talkers`` log (issue 14: 3):
a real ``enx-bot run`` with the embedded room server, real media, JSON logs."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
server: embedded
bots:
  - name: bob
    media: {tone_hz: null, width: 160, height: 120, fps: 5}
    stay: 11
  - name: alice
    join_delay: 1
    media: {width: 160, height: 120, fps: 5}
    stay: 10
  - name: carol  # leaves first: its last list is the room as it was
    local_info: {video: false}
    media: {tone_hz: null}
    receive: {subscribe: talkers, max_video: 1}
    stay: 8
"""


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_a_talkers_bot_sees_the_speaker_with_video_and_the_rest_audio_only(tmp_path: Path) -> None:
    cfg = tmp_path / "talkers.yaml"
    cfg.write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENX_")}
    env["ENX_REPORT_DIR"] = str(tmp_path / "reports")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", str(cfg), "--log-format", "json",
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 45)
    assert proc.returncode == 0, stderr.decode()[-3000:]
    events: list[dict[str, Any]] = [json.loads(x) for x in stdout.decode().splitlines() if x.startswith("{")]
    talkers = [e for e in events if e["event"] == "active_talkers" and e["bot"] == "carol"]
    assert talkers, "carol logged no active_talkers"
    last = talkers[-1]
    assert last["user"] == "alice" and last["user_id"] and last["talkers"][0] == "alice"
    assert set(last["talkers"]) == {"alice", "bob"} and last["count"] == 2
    assert all(a["stream_ids"] != b["stream_ids"] for a, b in itertools.pairwise(talkers))
    subscribed: dict[str, dict[str, Any]] = {}
    for e in events:
        if e["event"] == "subscribed_stream" and e["bot"] == "carol":
            subscribed[e["user"]] = e  # the latest leg per participant
    assert subscribed["alice"]["video"] is True and subscribed["alice"]["audio"] is True
    assert subscribed["bob"]["video"] is False and subscribed["bob"]["audio"] is True
    others = [e for e in events if e["event"] == "subscribed_stream" and e["bot"] != "carol"]
    assert others == []  # the others receive nothing (subscribe: none)
