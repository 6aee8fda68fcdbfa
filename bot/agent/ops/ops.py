"""Everything operations needs around one run, in one object: metrics, the health server,
the run report and the terminal progress line.

Wiring (the CLI's ``run`` path and the runner)::

    ops = Ops.for_process(cfg, plan, os.environ)  # or Ops.from_env(target), Ops(target, ...)
    agent = Agent(cfg, events=ops.events)         # bots call ops.events.bot_state(...) etc.
    code = await ops.run(agent.run())             # start, run, then report (also on SIGTERM)

Environment (the container's contract; a config value passed in wins):

=====================  ============================================================
``ENX_METRICS_PORT``   serve ``/metrics``, ``/healthz``, ``/readyz`` here (unset: off)
``ENX_METRICS_HOST``   address to bind (default ``127.0.0.1``; the image sets ``0.0.0.0``)
``ENX_REPORT_DIR``     write ``report.json`` and ``report.html`` here at the end (unset: none)
``ENX_PROGRESS``       ``auto`` (a status line when stderr is a terminal), ``on``, ``off``
``ENX_SHARD_INDEX``    recorded in the report (and names it ``report-<index>``)
``ENX_SHARD_COUNT``    recorded in the report
=====================  ============================================================
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import os
import socket
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

import structlog
from prometheus_client import CollectorRegistry

from ..errors import ConfigError
from .health import HealthServer
from .metrics import Metrics, MetricsAddress, metrics_address
from .observe import Observers
from .progress import Progress
from .report import RunRecorder

log = structlog.get_logger(__name__)
T = TypeVar("T")


def progress_setting(value: str | None) -> bool | None:
    """``ENX_PROGRESS``: None for auto, else on/off. ValueError names a bad value."""
    v = (value or "auto").strip().lower()
    if v in ("", "auto"):
        return None
    if v in ("1", "on", "true", "yes"):
        return True
    if v in ("0", "off", "false", "no"):
        return False
    raise ValueError(f"ENX_PROGRESS={value!r}: use auto, on or off")


def run_meta(config_digest: str) -> dict[str, Any]:
    """What a shard's report says about where it ran, for ``enx-bot report merge``."""
    try:
        version = importlib.metadata.version("enx-bot")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "config_digest": config_digest,
        "version": version,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def shard_meta(env: Mapping[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for key, name in (("ENX_SHARD_INDEX", "shard_index"), ("ENX_SHARD_COUNT", "shard_count")):
        raw = env.get(key, "").strip()
        if raw:
            meta[name] = int(raw) if raw.isdigit() else raw
    return meta


class ProcessSettings(Protocol):
    """What :meth:`Ops.for_process` reads of the agent's config (an ``AgentConfig``)."""

    @property
    def metrics_port(self) -> int | None: ...
    @property
    def metrics_host(self) -> str | None: ...
    @property
    def report_dir(self) -> str | None: ...
    @property
    def shard_index(self) -> int: ...
    @property
    def digest(self) -> str: ...
    def my_bots(self) -> Sequence[object]: ...


class Ops:
    def __init__(
        self,
        target: int,
        *,
        metrics_address: MetricsAddress | None = None,
        report_dir: str | os.PathLike[str] | None = None,
        report_stem: str = "report",
        progress: bool | None = False,
        meta: Mapping[str, Any] | None = None,
        registries: list[CollectorRegistry] | None = None,
    ) -> None:
        self.metrics = Metrics(target=target)
        self.recorder = RunRecorder(target=target, meta=meta)
        self.progress = Progress(target, enabled=progress)
        self.events = Observers(self.metrics, self.recorder, self.progress)
        self.report_dir = Path(report_dir) if report_dir else None
        self.report_stem = report_stem
        self.health: HealthServer | None = None
        if metrics_address is not None:
            self.health = HealthServer(
                self.metrics,
                self.metrics.all_in_rooms,
                metrics_address.host,
                metrics_address.port,
                registries=registries or [],
            )
        self.reports: tuple[Path, Path] | None = None
        self._closed = False

    @classmethod
    def from_env(
        cls,
        target: int,
        env: Mapping[str, str] | None = None,
        *,
        metrics_port: int | None = None,
        metrics_host: str | None = None,
        report_dir: str | None = None,
        run_meta: Mapping[str, Any] | None = None,
    ) -> Ops:
        """Settings from the environment (see the module's table), config values first.
        ValueError names a bad value."""
        env = os.environ if env is None else env
        meta = {**shard_meta(env), **(run_meta or {})}
        index = meta.get("shard_index")
        return cls(
            target,
            metrics_address=metrics_address(metrics_port, metrics_host, env),
            report_dir=report_dir or env.get("ENX_REPORT_DIR", "").strip() or None,
            report_stem="report" if index is None else f"report-{index}",
            progress=progress_setting(env.get("ENX_PROGRESS")),
            meta=meta,
        )

    @classmethod
    def for_process(cls, cfg: ProcessSettings, plan: object | None, env: Mapping[str, str]) -> Ops:
        """The ops of this process's bots of ``cfg``. A worker of a swarm (``plan`` set) serves its
        metrics on ``metrics_port + 1 + shard index``, so workers never clash with each other or
        with their parent. A bad setting is a ConfigError (exit 2)."""
        port = cfg.metrics_port
        raw = env.get("ENX_METRICS_PORT", "").strip()
        if port is None and raw:
            try:
                port = int(env["ENX_METRICS_PORT"])
            except ValueError:
                raise ConfigError(
                    f"ENX_METRICS_PORT={env['ENX_METRICS_PORT']!r} is not a port number"
                ) from None
        if plan is not None and port:
            port = port + 1 + cfg.shard_index
        try:
            return cls.from_env(
                len(cfg.my_bots()),
                env,
                metrics_port=port,
                metrics_host=cfg.metrics_host,
                report_dir=cfg.report_dir,
                run_meta=run_meta(cfg.digest),
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def add_registry(self, registry: CollectorRegistry) -> None:
        """Serve another registry on ``/metrics`` too (the embedded room server's)."""
        if self.health is not None:
            self.health.registries.append(registry)

    async def start(self) -> None:
        """Start the health server (OSError if its port is taken) and the progress line."""
        self.metrics.watch_loop(asyncio.get_running_loop())
        if self.health is not None:
            await self.health.start()
        await self.progress.start()
        self.progress.attach()

    def set_fast_paths(self, paths: Mapping[str, bool | int]) -> None:
        """``enx_fast_path{name}`` 0/1 on ``/metrics`` (``bot.webrtc.fast_paths()`` at start-up)."""
        self.metrics.set_fast_paths(paths)

    def signal_received(self, signame: str) -> None:
        """Call from the signal handler: the report then says ``ended_by: SIGTERM``."""
        self.recorder.note_end_cause(signame)

    async def aclose(self, ended_by: str | None = None) -> tuple[Path, Path] | None:
        """Idempotent: stop the progress line, write the reports (if a directory was given),
        log the summary (``run_report``), stop the health server. Returns the report paths."""
        if self._closed:
            return self.reports
        self._closed = True
        self.recorder.finish(ended_by)
        await self.progress.aclose()
        try:
            if self.report_dir is not None:
                self.reports = self.recorder.write_reports(self.report_dir, self.report_stem)
            summary = self.recorder.to_dict()["summary"]
            paths = [str(p) for p in self.reports] if self.reports else None
            log.info("run_report", reports=paths, **summary)
        except OSError as exc:
            log.error("report_failed", dir=str(self.report_dir), error=exc.strerror or str(exc))
        finally:
            if self.health is not None:
                await self.health.aclose()
        return self.reports

    async def run(self, work: Awaitable[T]) -> T:
        """Start, await ``work`` (the agent's run), then :meth:`aclose` whatever happened
        (``ended_by``: the noted signal, ``cancelled``, ``error`` or ``completed``)."""
        try:
            await self.start()
        except BaseException:  # e.g. the metrics port is taken: the work never runs
            if inspect.iscoroutine(work):
                work.close()  # no "coroutine was never awaited" after the one error line
            raise
        try:
            result = await work
        except BaseException as exc:
            await self.aclose(_cause(type(exc)))
            raise
        await self.aclose()
        return result

    async def __aenter__(self) -> Ops:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose(None if et is None else _cause(et))


def _cause(et: type[BaseException]) -> str:
    return "error" if issubclass(et, Exception) else "cancelled"
