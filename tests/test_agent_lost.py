"""A session that cannot be saved ends the agent with exit 4, one line on stderr, in time."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[1]
APP_ID, APP_KEY = "lost-app", "lost-key-0123456789abcdef-0123456789"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{APP_ID}:{APP_KEY}".encode()).decode()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
async def test_server_killed_for_good_ends_the_run_with_exit_4(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENX_")}
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", "--port", str(port), "--app-id", APP_ID, "--app-key", APP_KEY,
        "--data-dir", ":memory:", "--log-format", "json",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    bot = None
    try:
        api = f"http://127.0.0.1:{port}/video/v2"
        async with aiohttp.ClientSession(headers=AUTH) as http:
            for _ in range(100):
                try:
                    async with http.post(f"{api}/rooms", json={"name": "lost"}) as r:
                        room_id = (await r.json())["room"]["room_id"]
                    break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("room server did not start")
            async with http.post(
                f"{api}/rooms/{room_id}/tokens", json={"name": "doomed", "role": "participant"}
            ) as r:
                token = (await r.json())["token"]
        attempts, budget = 2, 4.0
        cfg = tmp_path / "bot.yaml"
        cfg.write_text(
            "token: ${ENX_TOKEN}\nbots:\n  - name: doomed\n"
            f"    room_info: {{allow_reconnect: true, number_of_attempts: {attempts}, timeout_interval: {budget}}}\n"
        )
        bot = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", str(cfg), "--log-format", "json",
            cwd=ROOT, env={**env, "ENX_TOKEN": token},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert bot.stdout is not None
        while True:
            line = await asyncio.wait_for(bot.stdout.readline(), 30)
            assert line, "the bot ended before publishing"
            if line.startswith(b"{") and json.loads(line).get("event") == "published_stream":
                break
        server.send_signal(signal.SIGKILL)
        await server.wait()
        t0 = time.monotonic()
        stdout, stderr = await asyncio.wait_for(bot.communicate(), attempts * budget + 20)
        elapsed = time.monotonic() - t0
        events = [json.loads(x) for x in stdout.decode().splitlines() if x.startswith("{")]
        names = [e["event"] for e in events]
        err = stderr.decode().strip()
        assert bot.returncode == 4, (bot.returncode, err)
        assert len(err.splitlines()) == 1 and "lost its session" in err and "Traceback" not in err, err
        assert "connection_lost" in names or "connection_interrupted" in names
        assert 1 <= names.count("reconnect") <= attempts
        gone = [e for e in events if e["event"] == "room_disconnected"]
        assert gone and gone[-1]["cause"] in (1165, 1166), gone
        # loss is noticed by the socket close at once; the budget bounds the rest
        assert elapsed < budget + 10, elapsed
        assert token not in stdout.decode() + err
    finally:
        for proc in (bot, server):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
