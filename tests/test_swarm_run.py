"""Swarms for real: bots joining a real room server over Socket.IO and WebRTC, paced by the ramp,
retried when their joins fail, sharing one encoding; worker processes stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web

from bot.agent.bot.run import Outcome
from bot.agent.config import parse_config
from bot.agent.errors import EXIT_JOIN_FAILED, EXIT_OK
from bot.agent.swarm.runner import Agent
from bot.server import RoomServer

ROOT = Path(__file__).resolve().parents[1]
VIEWER = {"role": "viewer", "local_info": {"audio": False, "video": False}}


@contextlib.contextmanager
def timed_logs() -> Iterator[list[dict[str, Any]]]:
    """Every structlog event as a dict with ``t`` (monotonic time) and the bound context."""
    entries: list[dict[str, Any]] = []

    def record(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        entries.append({**event, "t": time.monotonic()})
        raise structlog.DropEvent

    old = structlog.get_config()["processors"]
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, record])
    try:
        yield entries
    finally:
        structlog.configure(processors=old)


async def until(predicate: Any, within: float) -> bool:
    """Poll ``predicate`` every 0.1 s for ``within`` seconds; whether it came true."""
    deadline = time.monotonic() + within
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)


def times(logs: list[dict[str, Any]], event: str) -> list[float]:
    return sorted(e["t"] for e in logs if e["event"] == event)


async def run_for(agent: Agent, seconds: float) -> int:
    task = asyncio.create_task(agent.run())
    await asyncio.sleep(seconds)
    agent.stop()
    return await asyncio.wait_for(task, 20)


async def test_ramp_respects_its_rate(room_server: RoomServer) -> None:
    room_id = room_server.create_room(name="ramp")["room_id"]
    cfg = parse_config(
        {
            "api_url": room_server.api_url,
            "app_id": room_server.app_id,
            "app_key": room_server.app_key,
            "room_id": room_id,
            "ramp": 10,
            "bots": [{"name": "r{i}", "count": 8, **VIEWER}],
        },
        {},
    )
    with timed_logs() as logs:
        code = await run_for(Agent(cfg), 1.6)
    assert code == EXIT_OK
    joins = times(logs, "joining")
    assert len(joins) == 8
    gaps = [b - a for a, b in itertools.pairwise(joins)]
    assert min(gaps) > 0.07, gaps  # 10 joins/s: 0.1 s apart, give or take the event loop
    assert 0.6 < joins[-1] - joins[0] < 0.95, joins[-1] - joins[0]
    assert len(times(logs, "room_connected")) == 8


async def test_a_stalled_loop_delays_the_ramp_instead_of_bursting(room_server: RoomServer) -> None:
    """The event loop blocked for 0.35 s mid-ramp: the bots due meanwhile must not join together."""
    room_id = room_server.create_room(name="stall")["room_id"]
    cfg = parse_config(
        {
            "api_url": room_server.api_url,
            "app_id": room_server.app_id,
            "app_key": room_server.app_key,
            "room_id": room_id,
            "ramp": 10,
            "bots": [{"name": "s{i}", "count": 6, **VIEWER}],
        },
        {},
    )

    async def stall() -> None:
        await asyncio.sleep(0.15)
        time.sleep(0.35)  # noqa: ASYNC251 - the stall itself: nothing else on this loop runs

    with timed_logs() as logs:
        staller = asyncio.create_task(stall())
        code = await run_for(Agent(cfg), 1.8)
        await staller
    assert code == EXIT_OK
    joins = times(logs, "joining")
    assert len(joins) == 6
    gaps = [b - a for a, b in itertools.pairwise(joins)]
    assert min(gaps) > 0.07, gaps  # the ones due in the stall follow one another 0.1 s apart
    assert joins[-1] - joins[0] > 0.5 + 0.2, gaps  # so the ramp slipped by about the stall


async def test_ramp_stages_are_followed(room_server: RoomServer) -> None:
    cfg = parse_config(
        {
            "api_url": room_server.api_url,
            "app_id": room_server.app_id,
            "app_key": room_server.app_key,
            "rooms": 2,
            "bots_per_room": 3,
            "ramp": [{"to": 3, "over": "0.3s"}, {"hold": "0.6s"}, {"to": 6, "over": 0}],
            "bots": [{"name": "s{i}", "count": 6, **VIEWER}],
        },
        {},
    )
    agent = Agent(cfg)
    with timed_logs() as logs:
        assert await run_for(agent, 2.0) == EXIT_OK
    joins = times(logs, "joining")
    assert len(joins) == 6
    first, second = joins[:3], joins[3:]
    assert first[-1] - first[0] < 0.4  # 3 over 0.3 s
    assert 0.55 < second[0] - first[-1] < 0.9  # the hold
    assert second[-1] - second[0] < 0.15  # the last stage: all at once
    # two rooms were created through REST and filled in blocks of three
    by_room: dict[str, set[str]] = {}
    for e in logs:
        if e["event"] == "joining":
            by_room.setdefault(e["room"], set()).add(e["bot"])
    assert sorted(map(sorted, by_room.values())) == [["s1", "s2", "s3"], ["s4", "s5", "s6"]]


class FlakyTokenApp:
    """A user's token server (``token_url``) that fails the first ``fail`` requests of each bot
    with ``status``, then mints a real token."""

    def __init__(self, server: RoomServer, fail: int, status: int = 503) -> None:
        self.server, self.fail, self.status = server, fail, status
        self.seen: dict[str, int] = {}
        self.bodies: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        n = self.seen[body["name"]] = self.seen.get(body["name"], 0) + 1
        if n <= self.fail:
            return web.json_response({"error": "busy"}, status=self.status)
        token = self.server.mint_token(
            body["roomId"], name=body["name"], role=body["role"], user_ref=body["user_ref"]
        )
        return web.json_response({"token": token})


@contextlib.asynccontextmanager
async def token_app(app: FlakyTokenApp) -> Any:
    web_app = web.Application()
    web_app.router.add_post("/token", app.handle)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/token"
    finally:
        await runner.cleanup()


async def test_failed_joins_are_retried_with_backoff_and_counted(room_server: RoomServer) -> None:
    room_id = room_server.create_room(name="retry")["room_id"]
    flaky = FlakyTokenApp(room_server, fail=2)
    async with token_app(flaky) as url:
        cfg = parse_config(
            {
                "token_url": url,
                "room_id": room_id,
                "join_retries": 3,
                "join_backoff": "50ms",
                "bots": [{"name": "f{i}", "count": 3, **VIEWER}],
            },
            {},
        )
        agent = Agent(cfg)
        with timed_logs() as logs:
            assert await run_for(agent, 1.5) == EXIT_OK
    assert agent.retries == 6 and agent.failed == 0
    assert [r.outcome for r in agent.results] == [Outcome.COMPLETED] * 3
    retries = [e for e in logs if e["event"] == "join_retry"]
    assert len(retries) == 6 and {e["bot"] for e in retries} == {"f1", "f2", "f3"}
    assert all(0.025 <= e["delay_s"] <= 0.1 for e in retries)
    assert flaky.bodies[0] == {"name": "f1", "role": "viewer", "user_ref": "f1", "roomId": room_id}


async def test_joins_that_keep_failing_give_up_and_exit_3(room_server: RoomServer) -> None:
    room_id = room_server.create_room(name="giveup")["room_id"]
    busy, refused = FlakyTokenApp(room_server, fail=99), FlakyTokenApp(room_server, fail=99, status=403)
    async with token_app(busy) as busy_url, token_app(refused) as refused_url:
        raw = {
            "room_id": room_id,
            "join_retries": 2,
            "join_backoff": "20ms",
            "bots": [{"name": "g{i}", "count": 2, **VIEWER}],
        }
        gave_up = Agent(parse_config({**raw, "token_url": busy_url}, {}))
        refused_agent = Agent(parse_config({**raw, "token_url": refused_url}, {}))
        with timed_logs() as logs:
            assert await asyncio.wait_for(gave_up.run(), 10) == EXIT_JOIN_FAILED
            assert await asyncio.wait_for(refused_agent.run(), 10) == EXIT_JOIN_FAILED
    assert busy.seen == {"g1": 3, "g2": 3} and gave_up.failed == 2 and gave_up.retries == 4
    assert refused.seen == {"g1": 1, "g2": 1} and refused_agent.retries == 0  # 403: no retry can help
    failure = gave_up.first_failure()
    assert failure is not None and failure.startswith(
        "2 of 2 bots could not join; first, g1 after 3 attempts"
    )
    assert len([e for e in logs if e["event"] == "join_failed"]) == 4


async def test_two_bots_share_one_encoding_and_both_deliver(room_server: RoomServer) -> None:
    room_id = room_server.create_room(name="shared")["room_id"]
    cfg = parse_config(
        {
            "api_url": room_server.api_url,
            "app_id": room_server.app_id,
            "app_key": room_server.app_key,
            "room_id": room_id,
            "bots": [{"name": "p{i}", "count": 2, "media": {"width": 320, "height": 180, "fps": 15}}],
        },
        {},
    )
    agent = Agent(cfg)
    task = asyncio.create_task(agent.run())
    try:

        def frames() -> list[int]:
            view = room_server.room_view(room_id)
            return [s["received"]["video"]["frames"] for p in view["participants"] for s in p["streams"]]

        assert await until(lambda: len(frames()) == 2 and min(frames()) > 0, 15), frames()
        assert agent.shared is not None
        video = next(s for s in agent.shared.streams if s.kind == "video")
        audio = next(s for s in agent.shared.streams if s.kind == "audio")
        f0, e0, t0 = frames(), video.frames_encoded, time.monotonic()
        await asyncio.sleep(2.0)
        f1, e1, elapsed = frames(), video.frames_encoded, time.monotonic() - t0
        delivered = [b - a for a, b in zip(f0, f1, strict=True)]
        assert min(delivered) >= 0.8 * 15 * elapsed, delivered  # both bots deliver every frame
        assert e1 - e0 <= 15 * elapsed + 3, (e1 - e0, elapsed)  # ... of one encoding, not two
        assert video.runs == 1 and video.subscribers == 2 and audio.subscribers == 2
        view = room_server.room_view(room_id)
        assert all(s["received"]["audio"]["packets"] > 0 for p in view["participants"] for s in p["streams"])
    finally:
        agent.stop()
        assert await asyncio.wait_for(task, 15) == EXIT_OK
    assert video.subscribers == 0  # the bots' tracks left the encoder


def _events(lines: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.startswith(b"{")]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
async def test_worker_swarm_joins_and_stops_on_sigterm_without_orphans(
    room_server: RoomServer, tmp_path: Path
) -> None:
    room_id = room_server.create_room(name="workers")["room_id"]
    cfg = tmp_path / "swarm.yaml"
    cfg.write_text(
        f"api_url: {room_server.api_url}\napp_id: {room_server.app_id}\napp_key: {room_server.app_key}\n"
        f"room_id: {room_id}\nworkers: 2\nramp: 20\n"
        "bots:\n  - name: 'w{i}'\n    count: 4\n    local_info: {video: false}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENX_")}

    async def start() -> tuple[asyncio.subprocess.Process, list[bytes], list[int]]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", str(cfg), "--log-format", "json",
            cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        lines: list[bytes] = []
        deadline = time.monotonic() + 30
        while sum(e["event"] == "published_stream" for e in _events(lines)) < 4:
            line = await asyncio.wait_for(proc.stdout.readline(), max(0.1, deadline - time.monotonic()))
            assert line, b"".join(lines)[-3000:]
            lines.append(line)
        pids = next(e["pids"] for e in _events(lines) if e["event"] == "workers_started")
        return proc, lines, pids

    proc, lines, pids = await start()
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    assert sorted(p["name"] for p in room_server.room_view(room_id)["participants"]) == [
        "w1",
        "w2",
        "w3",
        "w4",
    ]
    shards = sorted(e["shard"] for e in _events(lines) if e["event"] == "swarm_started")
    assert shards == ["0/2", "1/2"]
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert time.monotonic() - t0 < 5
    assert room_server.room_view(room_id)["participants"] == []
    assert not any(_alive(p) for p in pids)
    events = _events([*lines, *out.splitlines()])
    assert sum(e["event"] == "room_disconnected" for e in events) == 4
    assert [e["code"] for e in events if e["event"] == "worker_exited"] == [0, 0]

    # a parent that dies without forwarding anything takes its workers with it
    proc, _, pids = await start()
    proc.kill()
    await proc.wait()
    assert await until(lambda: not any(_alive(p) for p in pids), 10)
    # they left the room on their SIGTERM
    assert await until(lambda: not room_server.room_view(room_id)["participants"], 10)
