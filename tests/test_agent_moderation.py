"""``enx-bot run`` under a moderator: a dropped bot does not reconnect and ends ``dropped`` (exit 0,
counted in the run's summary); hard mutes and recording notices become log lines."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from rtc_faults import NO_MEDIA, Recorder, eventually, packets

from bot.proto import ErrorCode
from bot.rtc import EnxRtc
from bot.server import RoomServer

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(120)


async def _events_until(stream: asyncio.StreamReader, seen: list[dict[str, Any]], event: str) -> None:
    while True:
        line = await asyncio.wait_for(stream.readline(), 60)
        assert line, f"the bot ended before {event}: {[e['event'] for e in seen]}"
        if line.startswith(b"{"):
            seen.append(json.loads(line))
            if seen[-1].get("event") == event:
                return


async def test_a_bot_dropped_by_a_moderator_ends_dropped_with_exit_0_and_never_rejoins(
    room_server: RoomServer, room: dict[str, Any], tmp_path: Path
) -> None:
    room_id = str(room["room_id"])
    mod = EnxRtc(label="mod")
    mod_rec = Recorder(mod)
    await mod.join_room(room_server.mint_token(room_id, name="mod", role="moderator"), NO_MEDIA)
    token = room_server.mint_token(room_id, name="worker", role="participant")
    cfg = tmp_path / "bot.yaml"
    cfg.write_text(
        "token: ${ENX_TOKEN}\nbots:\n  - name: worker\n"
        "    room_info: {allow_reconnect: true, number_of_attempts: 3, timeout_interval: 10}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENX_")}
    bot = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", str(cfg), "--log-format", "json",
        cwd=ROOT, env={**env, "ENX_TOKEN": token},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert bot.stdout is not None
        events: list[dict[str, Any]] = []
        await _events_until(bot.stdout, events, "published_stream")
        worker = next(
            p["clientId"] for p in room_server.room_view(room_id)["participants"] if p["name"] == "worker"
        )
        await eventually(lambda: packets(room_server, room_id, worker, "audio") > 20, what="the bot's audio")

        await mod.hard_mute()
        await _events_until(bot.stdout, events, "hard_muted")
        line = events[-1]
        assert line["kind"] == "audio" and line["scope"] == "room"
        assert line["user"] == "mod" and line["user_id"] == mod.client_id
        await asyncio.sleep(0.3)  # what was in flight
        before = packets(room_server, room_id, worker, "audio")
        await asyncio.sleep(1.0)
        assert packets(room_server, room_id, worker, "audio") == before, "the bot's audio still flows"
        await mod.hard_unmute()
        await _events_until(bot.stdout, events, "hard_unmuted")
        await mod.start_record()
        await _events_until(bot.stdout, events, "room_recording_on")

        await mod.drop_user([worker])
        stdout, stderr = await asyncio.wait_for(bot.communicate(), 30)
    finally:
        if bot.returncode is None:
            bot.kill()
            await bot.wait()
    events += [json.loads(x) for x in stdout.decode().splitlines() if x.startswith("{")]
    names = [e["event"] for e in events]
    assert bot.returncode == 0, (bot.returncode, stderr.decode())
    gone = [e for e in events if e["event"] == "room_disconnected"]
    assert gone and gone[-1]["cause"] == ErrorCode.DISCONNECTED_BY_MODERATOR, gone
    assert not {"connection_lost", "reconnect", "user_reconnect_success"} & set(names)
    summary = next(e for e in events if e["event"] == "run_report")
    assert summary["outcomes"] == {"dropped": 1}, summary
    ended = [e for e in events if e["event"] == "bot_ended"]
    assert ended and ended[0]["outcome"] == "dropped", ended
    assert stderr.decode().strip() == ""  # not a failure: nothing on stderr
    assert [p["name"] for p in room_server.room_view(room_id)["participants"]] == ["mod"]
    assert mod_rec.names().count("on_user_connected") == 1
    await mod.disconnect()
