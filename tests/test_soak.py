"""A short soak (configs/soak.yaml, two minutes): bots that rejoin every few seconds, chat and
publish against `enx-bot serve`. The swarm's tasks and descriptors do not grow from one round of
rejoins to the next, and the server's go back to where they were once every bot has left.
The long run (30 minutes, 50 bots) is a benchmark: bench/soak.py, BENCHMARKS.md."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import sys
from pathlib import Path

import aiohttp
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from single_bot import APP_ID, APP_KEY, ROOT, free_port
from soak import fds, gauge, threads
from swarm import Server

BOTS, RUN_S = 6, 105  # with the warm-up and the teardown: two minutes


async def _server_figures(server: Server) -> tuple[int, int, float | None]:
    assert server.proc is not None and server.http is not None
    pid = server.proc.pid
    tasks = await gauge(server.http, f"http://127.0.0.1:{server.port}/metrics", "enx_server_asyncio_tasks")
    return fds(pid), threads(pid), tasks


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_a_short_soak_leaks_no_tasks_or_descriptors(tmp_path: Path) -> None:
    metrics_port = free_port()
    async with Server() as server:
        assert server.http is not None and server.proc is not None
        async with server.http.post(f"{server.api}/rooms", json={"name": "soak"}) as r:
            room_id = (await r.json())["room"]["room_id"]
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ENX_")},
            "ENX_API_URL": server.api,
            "ENX_APP_ID": APP_ID,
            "ENX_APP_KEY": APP_KEY,
            "ENX_ROOM_ID": room_id,
            "ENX_BOTS": str(BOTS),
            "ENX_RAMP": "10",
            "ENX_REJOIN_EVERY": "6s..10s",
            "ENX_CHAT_EVERY": "2s..4s",
            "ENX_METRICS_PORT": str(metrics_port),
        }
        # a first bot joins and leaves: the server's one-time tasks (Engine.IO's service task,
        # the room's loops) exist from then on, so the baseline is a server that has seen a bot
        warm = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", str(ROOT / "configs" / "soak.yaml"),
            env={**env, "ENX_BOTS": "1", "ENX_NAME_PREFIX": "warm", "ENX_REJOIN_EVERY": "1h"},
            cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await asyncio.sleep(6)
        warm.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(warm.wait(), 30) == 0
        await _empty(server, room_id)
        baseline = await _server_figures(server)

        swarm = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", str(ROOT / "configs" / "soak.yaml"), "--log-format", "json",
            env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out_task = asyncio.ensure_future(swarm.stdout.read())  # type: ignore[union-attr]
        err_task = asyncio.ensure_future(swarm.stderr.read())  # type: ignore[union-attr]
        agent = f"http://127.0.0.1:{metrics_port}/metrics"
        early: list[float] = []
        late: list[float] = []
        early_fds: list[int] = []
        late_fds: list[int] = []
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        async with aiohttp.ClientSession() as http:
            while (t := loop.time() - t0) < RUN_S:
                await asyncio.sleep(1)
                tasks = await gauge(http, agent, "enx_asyncio_tasks")
                if tasks is None:
                    continue
                if 12 <= t < 30:  # after the ramp and the first round of rejoins
                    early.append(tasks)
                    early_fds.append(fds(swarm.pid))
                elif t >= RUN_S - 20:  # a dozen rounds of rejoins later
                    late.append(tasks)
                    late_fds.append(fds(swarm.pid))
        swarm.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(swarm.wait(), 30)
        out, err = await out_task, await err_task
        assert code == 0, err.decode()[-2000:]
        rejoins = out.decode().count('"action": "rejoin", "step"')
        assert rejoins >= BOTS * 2, f"only {rejoins} rejoins: the soak did not churn"
        assert early and late
        # the swarm: no growth from one round of rejoins to the next (medians, with a little slack
        # for the joins in flight at any moment)
        assert statistics.median(late) <= statistics.median(early) * 1.15 + 5, (early, late)
        assert statistics.median(late_fds) <= statistics.median(early_fds) + 6, (early_fds, late_fds)
        # the server: once everyone left, back to the baseline (sockets finish closing within
        # Engine.IO's ping timeout at worst: wait for that, not longer)
        await _empty(server, room_id)
        for _ in range(40):
            after = await _server_figures(server)
            if after[2] is not None and baseline[2] is not None and after[2] <= baseline[2] + 1:
                break
            await asyncio.sleep(0.5)
    assert after[0] <= baseline[0] + 1, f"server fds {baseline[0]} -> {after[0]}"
    assert after[1] <= baseline[1], f"server threads {baseline[1]} -> {after[1]}"
    assert baseline[2] is not None and after[2] is not None and after[2] <= baseline[2] + 1, (baseline, after)


async def _empty(server: Server, room_id: str) -> None:
    for _ in range(150):
        (view,) = await server.views([room_id])
        if not view.get("participants"):
            return
        await asyncio.sleep(0.2)
    raise AssertionError("participants still in the room after every bot left")


async def test_closed_peer_connections_are_given_back_under_the_tuned_collector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiortc's peer connections are cycles: with enx-bot's GC thresholds (full collections
    rare) closed ones piled up (12 MiB a minute in the soak) until bot.webrtc.reclaim."""
    import gc

    from aiortc import RTCPeerConnection

    from bot.agent.swarm.tuning import GC_THRESHOLDS
    from bot.media import SyntheticVideoTrack, ToneAudioTrack
    from bot.rtc import EnxRtc
    from bot.server import RoomServer
    from bot.webrtc import reclaim

    def live() -> int:
        return sum(1 for o in gc.get_objects() if isinstance(o, RTCPeerConnection))

    monkeypatch.setattr(reclaim, "RECLAIM_AFTER_S", 0.5)
    old = gc.get_threshold()
    gc.collect()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        async with RoomServer(app_id="reclaim", app_key="reclaim-key-0123456789abcdef0123456789") as server:
            room = server.create_room(name="reclaim")
            for _ in range(3):
                rtcs = []
                for i in range(3):
                    rtc = EnxRtc(
                        audio_track=ToneAudioTrack(440), video_track=SyntheticVideoTrack(160, 120, 10)
                    )
                    await rtc.join_room(server.mint_token(room["room_id"], name=f"r{i}"), {}, {})
                    rtcs.append(rtc)
                await asyncio.sleep(1.5)  # publishing goes on after join_room returns
                assert live() >= 6  # a publish leg each, client side and server side
                for rtc in rtcs:
                    await rtc.disconnect()
                del rtcs, rtc
                # The reclaim is due 0.5 s after the first close, with retries every 0.5 s for
                # connections their transports' last tasks still held.
                for _ in range(40):
                    await asyncio.sleep(0.1)
                    if not live():
                        break
                assert live() == 0, f"{live()} closed peer connections still in memory"
        assert reclaim.STATS.collections >= 3
    finally:
        gc.set_threshold(*old)


class _Cycle:
    def __init__(self) -> None:
        self.me = self


async def test_a_closed_connection_still_held_is_collected_on_a_retry_then_counted_as_lingering(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connection its last tasks still hold at the first collection is freed by a retry; one
    held for good is given up after ``RETRIES`` and counted (``enx_reclaim_lingering_total``)."""
    import gc
    import weakref

    from bot.webrtc import reclaim

    monkeypatch.setattr(reclaim, "RECLAIM_AFTER_S", 0.1)
    monkeypatch.setattr(reclaim, "STATS", reclaim.ReclaimStats())
    old = gc.get_threshold()
    gc.disable()  # only the reclaim collects here
    try:
        held: list[object] = [_Cycle()]
        released = weakref.ref(held[0])
        kept = _Cycle()
        reclaim.closed(held[0])
        reclaim.closed(kept)
        await asyncio.sleep(0.15)  # the first collection: both still referenced
        assert released() is not None and reclaim.STATS.collections == 1
        held.clear()  # the last task let go: a cycle only a collection frees
        assert released() is not None
        await asyncio.sleep(0.15)
        assert released() is None, "the retry did not free it"
        await asyncio.sleep(0.1 * (reclaim.RETRIES + 2))
        assert reclaim.STATS.lingering == 1
        assert reclaim.STATS.retries == reclaim.RETRIES
        collections = reclaim.STATS.collections
        await asyncio.sleep(0.3)
        assert reclaim.STATS.collections == collections, "it went on collecting for a held object"
        del kept
    finally:
        gc.enable()
        gc.set_threshold(*old)
