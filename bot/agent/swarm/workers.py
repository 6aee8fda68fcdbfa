"""Worker processes: one event loop carries a few dozen to a hundred bots, so bigger swarms are
spread over processes, each with its own shared media.

The parent (:class:`Supervisor`) prepares the swarm once (embedded server, rooms), then starts
``python -m bot run CONFIG`` once per worker with ``ENX_SHARD_INDEX``/``ENX_SHARD_COUNT`` (the
worker runs the bots ``i`` with ``i % count == index``, the same mechanism a Kubernetes Indexed
Job uses) and the :class:`~bot.agent.swarm.SwarmPlan` in ``ENX_SWARM_PLAN``. A parent that is
itself a shard ``a`` of ``A`` gives its worker ``b`` of ``B`` the shard ``a + A*b`` of ``A*B``.

Signals: workers run in their own process group, so a terminal's Ctrl-C reaches only the
parent, which forwards SIGTERM to every worker (a second signal is forwarded too: the workers
then cancel). Workers still running ``DRAIN_S`` after the first stop are killed. A worker asks
the kernel for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``), so none is orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import math
import os
import signal
import sys
import time

import structlog

from ..config import AgentConfig
from ..errors import EXIT_CONFIG, EXIT_JOIN_FAILED, EXIT_NOT_ADMITTED, EXIT_OK, EXIT_SESSION_LOST
from .plan import PLAN_ENV, Swarm

log = structlog.get_logger("bot.agent")

BOTS_PER_WORKER = 250
"""``workers: auto`` gives each worker about this many shared-media bots, up to one worker per
core: one event loop sends 200 shared-media publishers (audio + 640x360 video) with about half
a core, 300 with three quarters (BENCHMARKS.md), leaving room for joins; every further worker
costs its own interpreter and shared encoders (about 70 MiB and 8% of a core)."""
NAIVE_BOTS_PER_WORKER = 10
"""The same for bots that encode their own media (``shared_media: false``): about 9% of a core
each."""
STARTUP_S = 2.0
"""The ramp starts this long after the workers are spawned, once they have all imported."""
DRAIN_S = 15.0
"""After the first stop, workers get this long to leave their rooms before they are killed."""
KILL_AFTER_S = 3.0
PR_SET_PDEATHSIG = 1


def resolve_workers(cfg: AgentConfig) -> int:
    """How many worker processes for this process's bots (1: run them here)."""
    bots = len(cfg.my_bots())
    if cfg.workers == "auto":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        per_worker = BOTS_PER_WORKER if cfg.shared_media else NAIVE_BOTS_PER_WORKER
        return max(1, min(cores, math.ceil(bots / per_worker)))
    return max(1, min(cfg.workers, bots))


def die_with_parent(parent: int) -> bool:
    """Have the kernel send SIGTERM to this process when its parent exits (Linux); False if the
    parent ``parent`` is already gone."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    return not parent or os.getppid() == parent


def combine(codes: list[int]) -> int:
    """One exit code for the run: config > join failed > session lost (a crashed worker too) >
    not let into a waiting room."""
    if EXIT_CONFIG in codes:
        return EXIT_CONFIG
    if EXIT_JOIN_FAILED in codes:
        return EXIT_JOIN_FAILED
    if any(c not in (EXIT_OK, EXIT_NOT_ADMITTED) for c in codes):
        return EXIT_SESSION_LOST
    if EXIT_NOT_ADMITTED in codes:
        return EXIT_NOT_ADMITTED
    return EXIT_OK


class Supervisor:
    """Runs ``cfg``'s bots in ``workers`` child processes; ``argv`` is the child's ``bot`` command
    line after ``python -m bot`` (``run CONFIG`` and the logging flags)."""

    def __init__(self, cfg: AgentConfig, workers: int, argv: list[str]) -> None:
        self.cfg = cfg
        self.workers = workers
        self.argv = argv
        self.procs: list[asyncio.subprocess.Process] = []
        self.codes: list[int] = []
        self._stopping = False
        self._kill: asyncio.TimerHandle | None = None

    def stop(self) -> None:
        """Forward SIGTERM to every worker (their bots leave); kill what is left after DRAIN_S."""
        if not self._stopping:
            log.info("stopping", workers=len(self.procs))
            self._kill = asyncio.get_running_loop().call_later(DRAIN_S, self._signal_all, signal.SIGKILL)
        self._stopping = True
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, sig: signal.Signals) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)

    async def run(self) -> int:
        cfg = self.cfg
        swarm = Swarm(cfg)
        try:
            await swarm.start()
            if self._stopping:
                return EXIT_OK
            plan = swarm.plan_for_workers(epoch=time.time() + STARTUP_S, parent=os.getpid())
            count = cfg.shard_count * self.workers
            for k in range(self.workers):
                if self._stopping:
                    break
                env = {
                    **os.environ,
                    "ENX_SHARD_INDEX": str(cfg.shard_index + cfg.shard_count * k),
                    "ENX_SHARD_COUNT": str(count),
                    PLAN_ENV: plan.to_json(),
                    "PYTHONUNBUFFERED": "1",  # one write per log line: lines of workers never mix
                }
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bot", *self.argv,
                    env=env, stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
                self.procs.append(proc)
            log.info(
                "workers_started",
                workers=self.workers,
                pids=[p.pid for p in self.procs],
                bots=len(cfg.my_bots()),
                rooms=len(swarm.rooms),
            )
            self.codes = list(await asyncio.gather(*(self._wait(k, p) for k, p in enumerate(self.procs))))
        finally:
            if self._kill is not None:
                self._kill.cancel()
            await self._reap()
            await swarm.aclose()
        return combine(self.codes)

    async def _wait(self, k: int, proc: asyncio.subprocess.Process) -> int:
        code = await proc.wait()
        event = log.info if code == EXIT_OK else log.warning
        event("worker_exited", worker=k, pid=proc.pid, code=code)
        return code

    async def _reap(self) -> None:
        """No worker outlives the parent: SIGTERM the running ones, then SIGKILL."""
        live = [p for p in self.procs if p.returncode is None]
        if not live:
            return
        self._signal_all(signal.SIGTERM)
        waits = [asyncio.ensure_future(p.wait()) for p in live]
        _, pending = await asyncio.wait(waits, timeout=KILL_AFTER_S)
        if pending:
            self._signal_all(signal.SIGKILL)
            await asyncio.wait(pending)

    def first_failure(self) -> str | None:
        """A line for stderr about workers that died of a signal (the others spoke for
        themselves on the shared stderr)."""
        dead = [(k, -c) for k, c in enumerate(self.codes) if c < 0]
        if not dead:
            return None
        k, sig = dead[0]
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return f"worker {k} (pid {self.procs[k].pid}) was killed by {name}: its bots left without leaving"
