"""The agent end to end: real processes, real sockets on loopback, real WebRTC."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bot.rtc import EnxRtc
from bot.server import RoomServer

ROOT = Path(__file__).resolve().parents[1]


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENX_")}
    env.update(extra)
    return env


async def _spawn(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def _events(stdout: bytes) -> list[dict[str, Any]]:
    out = []
    for line in stdout.decode().splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


@pytest.mark.slow
async def test_demo_runs_to_the_end_by_itself() -> None:
    """configs/demo.yaml: three bots come and go and the run ends within 30 s, exit 0."""
    t0 = time.monotonic()
    proc = await _spawn("run", "configs/demo.yaml", "--log-format", "json", env=_env({}))
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 45)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, stderr.decode()[-3000:]
    assert elapsed < 32, elapsed
    events = _events(stdout)
    names = [e["event"] for e in events]
    assert names.count("room_connected") == 3
    assert names.count("published_stream") == 3
    assert names.count("room_disconnected") == 3
    joined = {(e["bot"], e["user"]) for e in events if e["event"] == "user_connected"}
    left = {(e["bot"], e["user"]) for e in events if e["event"] == "user_disconnected"}
    # alice was there first: she sees bob and carol arrive, and bob (who leaves early) go
    assert ("alice", "bob") in joined and ("alice", "carol") in joined
    assert ("alice", "bob") in left and ("carol", "bob") in left
    assert all(e.get("user_id") for e in events if e["event"] in ("user_connected", "user_disconnected"))
    assert any(e["event"] == "stream_added" and e["bot"] == "alice" for e in events)
    connected = [e for e in events if e["event"] == "room_connected"]
    assert all(e.get("client_id") and e.get("room") for e in connected)
    assert "Traceback" not in stdout.decode() + stderr.decode()


@pytest.mark.slow
async def test_sigterm_leaves_cleanly_and_others_see_it(room_server: RoomServer) -> None:
    room_id = room_server.create_room(name="sigterm")["room_id"]
    observer = EnxRtc()
    joined: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    left: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    observer.on_user_connected = joined.put_nowait
    observer.on_user_disconnected = left.put_nowait
    await observer.join_room(
        room_server.mint_token(room_id, name="observer", role="participant", user_ref="obs"),
        {"audio": False, "video": False, "name": "observer"},
        {},
    )
    try:
        token = room_server.mint_token(room_id, name="sig-bot", role="participant", user_ref="sig")
        proc = await _spawn(
            "run",
            "configs/bot.yaml",
            "--log-format",
            "json",
            env=_env({"ENX_TOKEN": token, "ENX_NAME": "sig-bot"}),
        )
        user = await asyncio.wait_for(joined.get(), 20)
        assert user["name"] == "sig-bot"
        # wait until its media is flowing, so the leave has something to tear down
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            view = room_server.room_view(room_id)
            streams = [s for p in view["participants"] if p["name"] == "sig-bot" for s in p["streams"]]
            if streams and streams[0]["received"]["video"]["packets"] > 0:
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail("the bot's video never reached the server")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 10)
        exit_s = time.monotonic() - t0
        gone = await asyncio.wait_for(left.get(), 5)
        seen_s = time.monotonic() - t0
        assert proc.returncode == 0, stderr.decode()[-2000:]
        assert exit_s < 3.0, exit_s
        assert seen_s < 3.0, seen_s
        assert gone["name"] == "sig-bot"
        assert token not in stdout.decode() + stderr.decode()
        names = [e["event"] for e in _events(stdout)]
        assert "room_disconnected" in names and "signal_received" in names
        view = room_server.room_view(room_id)
        assert [p["name"] for p in view["participants"]] == ["observer"]
    finally:
        await observer.disconnect()
