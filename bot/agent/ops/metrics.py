"""Prometheus metrics of one agent process, on a registry of its own (no module-level state).

Metric names (all prefixed ``enx_``):

==========================================  =========  =========================================
name                                        type       meaning
==========================================  =========  =========================================
``enx_bots{state}``                         gauge      bots per state (every ``BotState``, 0s too)
``enx_bots_target``                         gauge      bots this process is asked to run
``enx_bot_join_latency_seconds``            histogram  start of joining -> in the room
``enx_bot_join_failures_total``             counter    bots that could not join
``enx_bot_reconnects_total``                counter    reconnect attempts
``enx_bot_bandwidth_alerts_total``          counter    room bandwidth alerts received
``enx_bot_fallbacks_total``                 counter    audio-only fallbacks
``enx_bot_sessions_lost_total``             counter    sessions that ended unasked
``enx_media_sent_bytes_total``              counter    media bytes sent (all bots)
``enx_media_sent_packets_total``            counter    RTP packets sent
``enx_media_received_bytes_total``          counter    media bytes received
``enx_media_received_packets_total``        counter    RTP packets received
``enx_media_packets_lost_total``            counter    packets lost (as RTCP reports them)
``enx_data_messages_total{direction,type}``
                                            counter    chat / user data messages ``sent``
                                                       (acknowledged) / ``received``
``enx_data_bytes_total{direction,type}``    counter    their sizes (compact JSON, UTF-8)
``enx_scenario_actions_total{action,outcome}``
                                            counter    scenario actions run (``ok``, ``failed``,
                                                       ``timeout``)
``enx_asyncio_tasks``, ``enx_threads``      gauge      unfinished tasks of the loop, OS threads
``enx_reclaim_collections_total``, ``enx_reclaim_seconds_total``, ``enx_reclaim_lingering_total``
                                            counter    full collections after peer connections
                                                       closed, their time, and closed connections
                                                       still alive after every retry
                                                       (``bot.webrtc.reclaim``)
``enx_room_participants{room}``             gauge      participants per room, as our bots see it
``enx_failures_total{where}``               counter    unexpected failures contained (logged with
                                                       the traceback): ``callback:<name>``,
                                                       ``bot_task``, ``runner``, ``observer:<class>``
``enx_fast_path{name}``                     gauge      1 when a media fast path is installed, else 0
``enx_stream_*{stream}``, ``enx_streams_*``  various    monitoring bots' quality per stream, bounded
                                                       (``bot.agent.ops.quality_metrics``)
``process_*``                               various    CPU, memory, fds of this process
==========================================  =========  =========================================

Counters are per process, not per bot: a swarm of thousands of bots must not make thousands of
series. Per-bot detail goes to the run report (``bot.agent.report``).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter as Tally
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from ...webrtc import reclaim
from .observe import DONE, IN_ROOM, BotState, MediaTotals, NullObserver, as_state
from .quality_metrics import QualityMetrics

JOIN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)
NOT_READY = frozenset({BotState.JOINING, BotState.RECONNECTING, BotState.LOST, BotState.FAILED})


class Metrics(NullObserver):
    """Implements ``BotObserver``; ``render()`` is the ``/metrics`` body.

    Thread-safe to read (the health server renders from its own thread); call the
    observer methods from the event loop.
    """

    def __init__(self, target: int = 0, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self._states: dict[str, BotState] = {}
        self._media = MediaTotals()
        self.bots = Gauge("enx_bots", "Bots per state.", ["state"], registry=r)
        for s in BotState:
            self.bots.labels(state=s.value).set(0)
        self.target = Gauge("enx_bots_target", "Bots this process is asked to run.", registry=r)
        self.target.set(target)
        self.join_seconds = Histogram(
            "enx_bot_join_latency_seconds",
            "From the start of joining to being in the room.",
            buckets=JOIN_BUCKETS,
            registry=r,
        )
        self.join_failures = Counter("enx_bot_join_failures", "Bots that could not join.", registry=r)
        self.reconnects = Counter("enx_bot_reconnects", "Reconnect attempts.", registry=r)
        self.bandwidth_alerts = Counter(
            "enx_bot_bandwidth_alerts", "Room bandwidth alerts received.", registry=r
        )
        self.fallbacks = Counter("enx_bot_fallbacks", "Audio-only fallbacks.", registry=r)
        self.sessions_lost = Counter("enx_bot_sessions_lost", "Sessions that ended unasked.", registry=r)
        self.sent_bytes = Counter("enx_media_sent_bytes", "Media bytes sent.", registry=r)
        self.sent_packets = Counter("enx_media_sent_packets", "RTP packets sent.", registry=r)
        self.recv_bytes = Counter("enx_media_received_bytes", "Media bytes received.", registry=r)
        self.recv_packets = Counter("enx_media_received_packets", "RTP packets received.", registry=r)
        self.lost = Counter("enx_media_packets_lost", "RTP packets lost, as RTCP reports them.", registry=r)
        self.data_messages = Counter(
            "enx_data_messages",
            "Chat and user data messages sent or received.",
            ["direction", "type"],
            registry=r,
        )
        self.data_bytes = Counter(
            "enx_data_bytes",
            "Sizes of the data messages sent or received.",
            ["direction", "type"],
            registry=r,
        )
        self.scenario_actions = Counter(
            "enx_scenario_actions",
            "Scenario actions run, by action and outcome (ok, failed, timeout).",
            ["action", "outcome"],
            registry=r,
        )
        self.participants = Gauge("enx_room_participants", "Participants per room.", ["room"], registry=r)
        self.tasks = Gauge("enx_asyncio_tasks", "Unfinished asyncio tasks of the agent's loop.", registry=r)
        self.threads = Gauge("enx_threads", "OS threads of this process.", registry=r)
        self.failures = Counter(
            "enx_failures", "Unexpected failures contained, by where they happened.", ["where"], registry=r
        )
        self.fast_path = Gauge(
            "enx_fast_path", "1 when a media fast path is installed, else 0.", ["name"], registry=r
        )
        self.quality = QualityMetrics(r)
        ProcessCollector(registry=r)
        r.register(_ReclaimCollector())

    # ------------------------------------------------------------------ BotObserver

    def bot_state(self, bot: str, state: str) -> None:
        new = as_state(state)
        old = self._states.get(bot)
        if old is new:
            return
        if old is not None:
            self.bots.labels(state=old.value).dec()
        self.bots.labels(state=new.value).inc()
        self._states[bot] = new
        if new is BotState.FAILED:
            self.join_failures.inc()
        elif new is BotState.LOST:
            self.sessions_lost.inc()

    def join_latency(self, bot: str, seconds: float) -> None:
        self.join_seconds.observe(max(0.0, seconds))

    def reconnect(self, bot: str) -> None:
        self.reconnects.inc()

    def bandwidth_alert(self, bot: str) -> None:
        self.bandwidth_alerts.inc()

    def fallback(self, bot: str) -> None:
        self.fallbacks.inc()

    def media(
        self,
        bot: str,
        sent_bytes: int = 0,
        sent_packets: int = 0,
        recv_bytes: int = 0,
        recv_packets: int = 0,
        lost: int = 0,
    ) -> None:
        d = self._media.delta(bot, (sent_bytes, sent_packets, recv_bytes, recv_packets, lost))
        counters = (self.sent_bytes, self.sent_packets, self.recv_bytes, self.recv_packets, self.lost)
        for counter, inc in zip(counters, d, strict=True):
            if inc:
                counter.inc(inc)

    def data_message(self, bot: str, direction: str, kind: str, size: int) -> None:
        self.data_messages.labels(direction=direction, type=kind).inc()
        self.data_bytes.labels(direction=direction, type=kind).inc(max(0, size))

    def watch_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Count ``loop``'s tasks and the process's threads at every scrape (a soak's leaks)."""
        self.tasks.set_function(lambda: len(asyncio.all_tasks(loop)) if not loop.is_closed() else 0)
        self.threads.set_function(_os_threads)

    def scenario_action(self, bot: str, action: str, outcome: str) -> None:
        self.scenario_actions.labels(action=action, outcome=outcome).inc()

    def room_participants(self, room: str, n: int) -> None:
        self.participants.labels(room=room).set(max(0, n))

    def outcome(self, bot: str, outcome: str, reason: str = "") -> None:
        """The state follows from the outcome when the bot did not say it itself."""
        current = self._states.get(bot)
        if outcome == "join_failed":
            self.bot_state(bot, BotState.FAILED)
        elif outcome == "lost":
            self.bot_state(bot, BotState.LOST)
        elif current is not None:
            self.bot_state(bot, BotState.LEFT)

    def failure(self, where: str) -> None:
        self.failures.labels(where=where).inc()

    def stream_quality(self, bot: str, stream: str, sample: Mapping[str, object]) -> None:
        self.quality.sample(bot, stream, sample)

    # ------------------------------------------------------------------ queries

    def set_fast_paths(self, paths: Mapping[str, bool | int]) -> None:
        """``enx_fast_path{name}`` from ``{name: installed}`` (what ``bot.webrtc.fast_paths()``
        reports): 1 installed, 0 not."""
        for name, on in paths.items():
            self.fast_path.labels(name=name).set(1 if on else 0)

    def set_target(self, n: int) -> None:
        self.target.set(n)

    def counts(self) -> Mapping[BotState, int]:
        """Bots per state right now."""
        return Tally(self._states.values())

    def all_in_rooms(self) -> bool:
        """Readiness: at least one bot is expected in a room, and every bot that is (started
        joining and has not left) is in its room. A bot still waiting for its ``join_delay``
        is not expected yet; one that could not join or lost its session makes it false."""
        expected = [s for s in self._states.values() if s not in DONE]
        return bool(expected) and all(s in IN_ROOM for s in expected)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)


class _ReclaimCollector(Collector):
    """The process-wide ``bot.webrtc.reclaim.STATS``, read at each scrape."""

    def collect(self) -> list[Metric]:
        stats = reclaim.STATS
        return [
            CounterMetricFamily(
                "enx_reclaim_collections",
                "Full collections after peer connections closed.",
                value=stats.collections,
            ),
            CounterMetricFamily(
                "enx_reclaim_seconds", "Time spent in those collections.", value=stats.seconds
            ),
            CounterMetricFamily(
                "enx_reclaim_lingering",
                "Closed peer connections still alive after every retry.",
                value=stats.lingering,
            ),
        ]


@dataclass(frozen=True)
class MetricsAddress:
    host: str
    port: int


DEFAULT_METRICS_HOST = "127.0.0.1"
"""Outside a container the metrics stay on loopback; the Dockerfile sets ENX_METRICS_HOST=0.0.0.0."""


def metrics_address(
    port: int | None = None, host: str | None = None, env: Mapping[str, str] | None = None
) -> MetricsAddress | None:
    """Where to serve ``/metrics``, ``/healthz`` and ``/readyz``, or None (off).

    The config's values win; otherwise ``ENX_METRICS_PORT`` (unset or empty: off; ``0``: a
    free port) and ``ENX_METRICS_HOST`` (default ``127.0.0.1``: nothing is exposed beyond this
    machine unless asked; the image sets ``0.0.0.0`` so probes and scrapers reach a container).
    ValueError names a bad value."""
    env = os.environ if env is None else env
    if port is None:
        raw = env.get("ENX_METRICS_PORT", "").strip()
        if not raw:
            return None
        try:
            port = int(raw)
        except ValueError:
            raise ValueError(f"ENX_METRICS_PORT={raw!r} is not a TCP port number (0-65535)") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"metrics port {port} is not a TCP port (0-65535)")
    host = host or env.get("ENX_METRICS_HOST", "").strip() or DEFAULT_METRICS_HOST
    return MetricsAddress(host, port)


def _os_threads() -> float:
    """Threads of this process as the kernel counts them (native ones too), else Python's."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Threads:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float(threading.active_count())
