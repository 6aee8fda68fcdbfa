"""Process settings that matter with hundreds of bots: event loop, file descriptors, GC.

Called by the CLI's ``run`` and ``serve`` paths only, never at import time.

- **Event loop**: uvloop when installed (``event_loop: auto``), else asyncio's.
- **File descriptors**: each bot holds a Socket.IO WebSocket, one UDP socket per ICE host
  candidate (one per network interface and address family) and its DTLS/SRTP state: about 4-8
  descriptors. The soft ``RLIMIT_NOFILE`` (often 1024) is raised to the hard limit.
- **Garbage collector**: every join allocates thousands of objects (peer connections, SDP,
  certificates), so while a swarm ramps CPython's full collection runs every couple of seconds
  over a heap that keeps growing: pauses of 100-200 ms at 200 bots, in the bots' process and
  in the room server's, each one delaying every join in flight. :func:`tune_gc` makes the young
  generation 50 000 allocations instead of 700 and a full collection wait for 2 000 young ones
  instead of 100 (CPython still runs it once the long-lived objects grew by 25%): during a ramp
  it practically never runs, and is no longer when it does; a ``gc.freeze()`` first keeps what
  was imported at start out of every collection.
  Measured at 200 bots joining at 20/s: join p99 256-266 ms before, 90-101 ms after
  (BENCHMARKS.md).
- **Socket buffers**: a bot only sends; the kernel default send buffer (``net.core.wmem_default``,
  about 208 KiB) carries 640x360 video. A room server receiving hundreds of streams wants
  larger receive buffers: ``sysctl -w net.core.rmem_max=26214400 net.core.rmem_default=1048576``.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import importlib.util
import resource
from collections.abc import Callable
from typing import Literal

import structlog

from ..errors import ConfigError

log = structlog.get_logger("bot.agent")

FDS_PER_BOT = 8
"""A generous estimate of the file descriptors one publishing bot holds."""


def loop_factory(
    choice: Literal["auto", "asyncio", "uvloop"],
) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop to run on: None for asyncio's default."""
    if choice == "asyncio":
        return None
    if importlib.util.find_spec("uvloop") is None:
        if choice == "uvloop":
            raise ConfigError("event_loop: uvloop is not installed: pip install uvloop, or use auto")
        return None
    new_event_loop: Callable[[], asyncio.AbstractEventLoop] = importlib.import_module("uvloop").new_event_loop
    return new_event_loop


GC_THRESHOLDS = (50_000, 20, 100)
"""``gc.set_threshold``: young generation, then collections of each before the next one up."""


def tune_gc() -> None:
    """Fewer, not longer, garbage collections (see the module docstring)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def raise_fd_limit(bots: int) -> int:
    """Raise the soft file-descriptor limit to the hard one; warn when ``bots`` may not fit.
    Returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError) as exc:
            log.warning("fd_limit_unchanged", soft=soft, hard=hard, error=str(exc))
    need = 64 + bots * FDS_PER_BOT
    if soft != resource.RLIM_INFINITY and soft < need:
        log.warning(
            "fd_limit_low",
            limit=soft,
            bots=bots,
            need=need,
            hint="raise the hard limit (ulimit -Hn, LimitNOFILE=, docker --ulimit nofile=...)",
        )
    return soft
