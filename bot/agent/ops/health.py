"""``/metrics``, ``/healthz`` and ``/readyz`` for Prometheus and container probes.

The HTTP server runs in a thread with its own event loop, so it answers even while the bots'
loop is stuck: that is what lets ``/healthz`` say *503 event loop stalled* instead of timing
out. The bots' loop proves it is alive with a heartbeat task (every ``interval`` seconds) that
also evaluates ``ready()`` there, on the loop that owns the bots' state; the server thread only
reads those two values and renders the Prometheus registries (which are thread-safe).

- ``GET /healthz``: 200 ``ok`` while the heartbeat is younger than ``stale_after`` seconds,
  else 503 (a liveness probe restarts the container).
- ``GET /readyz``: 200 when ``ready()`` was true at the last heartbeat and the loop is alive,
  else 503 with the bots per state (a readiness probe; for a swarm, "everyone is in").
- ``GET /metrics``: the Prometheus text format of ``metrics`` and any extra registries (the
  embedded room server's, say).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from .metrics import Metrics

log = structlog.get_logger(__name__)


class HealthServer:
    def __init__(
        self,
        metrics: Metrics | None,
        ready: Callable[[], bool],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        registries: Sequence[CollectorRegistry] = (),
        interval: float = 0.5,
        stale_after: float = 5.0,
    ) -> None:
        self.metrics = metrics
        self.ready = ready
        self.host = host
        self.port = port  # the bound port once started (useful with 0)
        self.registries = list(registries)
        self.interval = interval
        self.stale_after = stale_after
        self._beat_at = time.monotonic()
        self._ready = False
        self._detail = ""
        self._beat_task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the server thread's loop
        self._stop: asyncio.Event | None = None
        self._bound = threading.Event()
        self._error: BaseException | None = None
        self._closed = False

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the heartbeat on the running loop and the HTTP server thread; returns once
        it listens. OSError when the address cannot be bound (taken, not ours)."""
        if self._thread is not None:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.create_server((self.host, self.port), family=family)  # OSError: taken
        self.port = int(sock.getsockname()[1])
        self._beat()
        self._beat_task = asyncio.create_task(self._heartbeat(), name="health:heartbeat")
        self._thread = threading.Thread(target=self._serve, args=(sock,), name="health-server", daemon=True)
        self._thread.start()
        await asyncio.to_thread(self._bound.wait)
        if self._error is not None:
            await self.aclose()
            raise self._error
        log.info("health_server_started", url=self.url, endpoints=["/metrics", "/healthz", "/readyz"])

    async def aclose(self) -> None:
        """Idempotent: stop the heartbeat and the server thread."""
        if self._closed:
            return
        self._closed = True
        if self._beat_task is not None:
            self._beat_task.cancel()
            await asyncio.gather(self._beat_task, return_exceptions=True)
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended on its own
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)

    # ------------------------------------------------------------------ heartbeat (bots' loop)

    def _beat(self) -> None:
        try:
            ready = bool(self.ready())
        except Exception:
            log.exception("readiness_check_failed")
            ready = False
        detail = ""
        if self.metrics is not None:
            counts = self.metrics.counts()
            detail = " ".join(f"{state.value}={n}" for state, n in sorted(counts.items()) if n)
        self._ready, self._detail = ready, detail
        self._beat_at = time.monotonic()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self._beat()

    def stalled_for(self) -> float | None:
        """Seconds since the last heartbeat when that is more than ``stale_after``, else None."""
        age = time.monotonic() - self._beat_at
        dead = self._beat_task is not None and self._beat_task.done()
        return age if (age > self.stale_after or dead) else None

    # ------------------------------------------------------------------ HTTP (server thread)

    def _serve(self, sock: socket.socket) -> None:
        try:
            asyncio.run(self._serve_main(sock))
        except BaseException as exc:  # reported to start(), never lost
            self._error = exc
        finally:
            self._bound.set()

    async def _serve_main(self, sock: socket.socket) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
            self._bound.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        stalled = self.stalled_for()
        if stalled is not None:
            return web.Response(status=503, text=f"event loop stalled for {stalled:.1f} s\n")
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        stalled = self.stalled_for()
        if stalled is not None:
            return web.Response(status=503, text=f"event loop stalled for {stalled:.1f} s\n")
        detail = f" ({self._detail})" if self._detail else ""
        if not self._ready:
            return web.Response(status=503, text=f"not ready{detail}\n")
        return web.Response(text=f"ready{detail}\n")

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self._render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    def _render(self) -> bytes:
        parts = [self.metrics.render()] if self.metrics is not None else []
        parts += [generate_latest(r) for r in self.registries]
        return b"".join(parts)
