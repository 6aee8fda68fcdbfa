"""``Ops``: the one object the run path wires in, configured from the container's environment."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from bot.agent.ops import Ops, progress_setting


async def test_ops_from_env_serves_then_reports(tmp_path: Path) -> None:
    env = {
        "ENX_METRICS_PORT": "0",
        "ENX_METRICS_HOST": "127.0.0.1",
        "ENX_REPORT_DIR": str(tmp_path / "reports"),
        "ENX_SHARD_INDEX": "2",
        "ENX_SHARD_COUNT": "4",
        "ENX_PROGRESS": "off",
    }
    ops = Ops.from_env(target=2, env=env)
    assert ops.health is not None and not ops.progress.enabled
    seen: dict[str, tuple[int, str]] = {}

    async def work() -> int:  # what the runner does, reduced to the calls the bots make
        assert ops.health is not None
        async with aiohttp.ClientSession() as http:

            async def get(path: str) -> tuple[int, str]:
                assert ops.health is not None
                async with http.get(ops.health.url + path) as resp:
                    return resp.status, await resp.text()

            ops.events.bot_state("a", "joining")
            ops.events.bot_state("b", "joining")
            await asyncio.sleep(0.7)
            seen["not_ready"] = await get("/readyz")
            for bot, ms in (("a", 0.02), ("b", 0.05)):
                ops.events.bot_state(bot, "connected")
                ops.events.join_latency(bot, ms)
                ops.events.media(bot, sent_bytes=1000, sent_packets=10)
            ops.events.room_participants("room-x", 2)
            await asyncio.sleep(0.7)
            seen["ready"] = await get("/readyz")
            seen["healthz"] = await get("/healthz")
            seen["metrics"] = await get("/metrics")
            ops.signal_received("SIGTERM")
            for bot in ("a", "b"):
                ops.events.outcome(bot, "completed", "signal")
        return 0

    assert await ops.run(work()) == 0
    assert seen["not_ready"] == (503, "not ready (joining=2)\n")
    assert seen["ready"] == (200, "ready (connected=2)\n")
    assert seen["healthz"] == (200, "ok\n")
    assert 'enx_bots{state="connected"} 2.0' in seen["metrics"][1]
    assert "enx_media_sent_bytes_total 2000.0" in seen["metrics"][1]
    assert 'enx_room_participants{room="room-x"} 2.0' in seen["metrics"][1]

    assert ops.reports is not None
    json_path, html_path = ops.reports
    assert (json_path.name, html_path.name) == ("report-2.json", "report-2.html")
    data = json.loads(json_path.read_text())
    assert data["meta"] == {"shard_index": 2, "shard_count": 4}
    assert data["ended_by"] == "SIGTERM"
    assert data["summary"]["outcomes"] == {"completed": 2}
    assert data["summary"]["join_latency_ms"]["max"] == 50.0
    # the health server is gone with the run
    with pytest.raises(aiohttp.ClientError):
        async with aiohttp.ClientSession() as http, http.get(ops.health.url + "/healthz") as resp:
            await resp.read()


async def test_ops_defaults_do_nothing_visible(tmp_path: Path) -> None:
    ops = Ops.from_env(target=1, env={})
    assert ops.health is None and ops.report_dir is None
    async with ops:
        ops.events.bot_state("a", "connected")
    assert ops.reports is None


async def test_ops_run_reports_a_crash(tmp_path: Path) -> None:
    ops = Ops(1, report_dir=tmp_path)

    async def boom() -> None:
        ops.events.bot_state("a", "joining")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await ops.run(boom())
    assert ops.reports is not None
    assert json.loads(ops.reports[0].read_text())["ended_by"] == "error"


def test_progress_setting() -> None:
    assert progress_setting(None) is None and progress_setting("auto") is None
    assert progress_setting("on") is True and progress_setting("off") is False
    with pytest.raises(ValueError, match="ENX_PROGRESS='sometimes'"):
        progress_setting("sometimes")
