"""/healthz and /readyz over real HTTP: the probes a container runtime would make.

The liveness check must notice a stuck event loop. The test blocks the loop for real
(``time.sleep`` on it) while a client in another thread keeps asking, as a kubelet would.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from bot.agent.ops.health import HealthServer
from bot.agent.ops.metrics import Metrics


def get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def aget(url: str) -> tuple[int, str]:
    return await asyncio.to_thread(get, url)


async def test_healthz_goes_unhealthy_while_the_loop_is_blocked() -> None:
    async with HealthServer(None, lambda: True, "127.0.0.1", 0, interval=0.1, stale_after=1.0) as server:
        assert await aget(server.url + "/healthz") == (200, "ok\n")

        seen: list[tuple[float, int, str]] = []
        readiness: list[int] = []
        stop = threading.Event()

        def probe() -> None:  # a kubelet in another thread
            t0 = time.monotonic()
            while not stop.is_set():
                status, body = get(server.url + "/healthz", timeout=1.0)
                seen.append((time.monotonic() - t0, status, body))
                readiness.append(get(server.url + "/readyz", timeout=1.0)[0])
                time.sleep(0.1)

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        time.sleep(2.0)  # noqa: ASYNC251 -- the point: the event loop is stuck for 2 s
        await asyncio.sleep(0.3)  # the loop runs again: heartbeats resume
        stop.set()
        await asyncio.to_thread(prober.join, 3.0)

        statuses = [s for _, s, _ in seen]
        assert 200 in statuses[:3], seen  # healthy before the block made the heartbeat stale
        stalled = [(t, body) for t, s, body in seen if s == 503]
        assert stalled, seen
        assert all(body.startswith("event loop stalled for ") for _, body in stalled)
        assert stalled[0][0] >= 0.8, seen  # not before stale_after
        assert statuses[-1] == 200, seen  # healthy again once the loop runs
        assert 503 in readiness and readiness[-1] == 200  # not ready while stuck, ready again


async def test_readyz_follows_the_callable() -> None:
    ready = False
    async with HealthServer(None, lambda: ready, "127.0.0.1", 0, interval=0.05) as server:
        assert await aget(server.url + "/readyz") == (503, "not ready\n")
        assert (await aget(server.url + "/healthz"))[0] == 200  # alive, just not ready
        ready = True
        await asyncio.sleep(0.2)
        assert await aget(server.url + "/readyz") == (200, "ready\n")
        ready = False
        await asyncio.sleep(0.2)
        assert (await aget(server.url + "/readyz"))[0] == 503


async def test_readyz_with_metrics_says_who_is_where() -> None:
    metrics = Metrics(target=2)
    async with HealthServer(metrics, metrics.all_in_rooms, "127.0.0.1", 0, interval=0.05) as server:
        metrics.bot_state("a", "connected")
        metrics.bot_state("b", "joining")
        await asyncio.sleep(0.2)
        assert await aget(server.url + "/readyz") == (503, "not ready (connected=1 joining=1)\n")
        metrics.bot_state("b", "connected")
        await asyncio.sleep(0.2)
        assert await aget(server.url + "/readyz") == (200, "ready (connected=2)\n")


async def test_a_raising_readiness_check_is_not_ready() -> None:
    def broken() -> bool:
        raise RuntimeError("boom")

    async with HealthServer(None, broken, "127.0.0.1", 0, interval=0.05) as server:
        assert (await aget(server.url + "/readyz"))[0] == 503
        assert (await aget(server.url + "/healthz"))[0] == 200


async def test_taken_port_is_an_oserror_and_close_is_idempotent() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = HealthServer(None, lambda: True, "127.0.0.1", port)
        with pytest.raises(OSError):
            await server.start()
        await server.aclose()
    server = HealthServer(None, lambda: True, "127.0.0.1", 0)
    await server.start()
    url = server.url
    await server.aclose()
    await server.aclose()
    with pytest.raises(OSError):
        await asyncio.to_thread(get, url + "/healthz", 0.5)
