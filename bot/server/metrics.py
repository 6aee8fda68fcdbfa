"""Prometheus metrics of one room server, on a registry of its own (many servers per process).

``RoomServer.registry`` holds only the ``enx_server_*`` families below, read from the
server's state at scrape time (nothing is updated per packet): the embedded agent merges it
into its own exposition. ``GET /metrics`` on the server's app serves it, plus the
``process_*`` families of the process, without authentication like most exporters (it shows
room ids and counts, never tokens nor keys).

=============================================  =========  =======================================
name                                           type       meaning
=============================================  =========  =======================================
``enx_server_rooms``                           gauge      rooms that exist
``enx_server_participants{room}``              gauge      participants per room (away ones too)
``enx_server_streams_published``               gauge      streams announced to the room
``enx_server_streams_forwarded``               gauge      subscribe legs whose media is up
``enx_server_forwarded_packets_total``         counter    encoded packets (VP8 frames, Opus
                                                          packets) sent to subscribers
``enx_server_forwarded_bytes_total``           counter    their payload bytes (before RTP)
``enx_server_bandwidth_alerts_total{kind}``    counter    low-bandwidth verdicts sent;
                                                          ``kind``: publisher / subscriber
``enx_server_bandwidth_restores_total``        counter    restored verdicts sent
``enx_server_joins_total``                     counter    tokens accepted (joins and rejoins)
``enx_server_join_refusals_total{code}``       counter    tokens refused, by error code
``enx_server_data_messages_total{type}``      counter    chat / user data messages relayed
``enx_server_data_bytes_total{type}``         counter    their sizes (compact JSON, UTF-8)
``enx_server_asyncio_tasks``                   gauge      unfinished tasks of its event loop
``enx_server_failures_total{where}``           counter    unexpected exceptions the server
                                                          survived (logged with their traceback);
                                                          ``where``: signalling_handler,
                                                          bandwidth_loop, media_leg,
                                                          background_task
=============================================  =========  =======================================

The failures family is named under ``enx_server_`` like the others: the embedded agent
concatenates this registry with its own, where a family of the same name would clash.

Scrapes may come from another thread (the agent's health server): the collector copies the
server's containers before reading them and retries if one changed under it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from bot.webrtc import fast_path_gauges

from .api import RoomApi

_ATTEMPTS = 5
FAILURES = "enx_server_failures"


class ServerCollector:
    """Reads one room server (any :class:`~.api.RoomApi`) at scrape time."""

    def __init__(self, server: RoomApi) -> None:
        self._server = server

    def describe(self) -> Iterator[Metric]:
        yield from self._families(empty=True)

    def collect(self) -> Iterator[Metric]:
        for attempt in range(_ATTEMPTS):
            try:
                families = list(self._families(empty=False))
            except RuntimeError:  # a dict changed size while we copied it: read again
                if attempt == _ATTEMPTS - 1:
                    raise
                continue
            yield from families
            return

    def _families(self, *, empty: bool) -> Iterator[Metric]:
        server = self._server
        rooms = GaugeMetricFamily("enx_server_rooms", "Rooms that exist.")
        participants = GaugeMetricFamily(
            "enx_server_participants", "Participants per room (away ones too).", labels=["room"]
        )
        published = GaugeMetricFamily("enx_server_streams_published", "Streams announced to the room.")
        forwarded = GaugeMetricFamily("enx_server_streams_forwarded", "Subscribe legs whose media is up.")
        packets = CounterMetricFamily(
            "enx_server_forwarded_packets",
            "Encoded packets (VP8 frames, Opus packets) sent to subscribers.",
        )
        octets = CounterMetricFamily(
            "enx_server_forwarded_bytes", "Payload bytes of the packets sent to subscribers."
        )
        alerts = CounterMetricFamily(
            "enx_server_bandwidth_alerts", "Low-bandwidth verdicts sent, by leg.", labels=["kind"]
        )
        restores = CounterMetricFamily("enx_server_bandwidth_restores", "Restored-bandwidth verdicts sent.")
        joins = CounterMetricFamily("enx_server_joins", "Tokens accepted (joins and rejoins).")
        refusals = CounterMetricFamily(
            "enx_server_join_refusals", "Tokens refused, by error code.", labels=["code"]
        )
        data_messages = CounterMetricFamily(
            "enx_server_data_messages", "Chat and user data messages relayed, by type.", labels=["type"]
        )
        data_bytes = CounterMetricFamily(
            "enx_server_data_bytes", "Sizes of the data messages relayed, by type.", labels=["type"]
        )
        failures = CounterMetricFamily(
            FAILURES, "Unexpected exceptions the server survived, by where.", labels=["where"]
        )
        tasks = GaugeMetricFamily(
            "enx_server_asyncio_tasks",
            "Unfinished asyncio tasks of the server's event loop (leaks show here).",
        )
        if not empty:
            loop = getattr(server, "loop", None)
            tasks.add_metric(
                [], len(asyncio.all_tasks(loop)) if loop is not None and not loop.is_closed() else 0
            )
            all_rooms = list(server.rooms)
            rooms.add_metric([], len(all_rooms))
            streams = 0
            for room in all_rooms:
                participants.add_metric([room.room_id], len(room.participants))
                streams += sum(1 for s in list(room.streams.values()) if s.announced)
            published.add_metric([], streams)
            media = server.media_counts()
            forwarded.add_metric([], media.forwarded_legs)
            packets.add_metric([], media.packets)
            octets.add_metric([], media.bytes)
            stats = server.stats
            for kind, count in sorted(dict(stats.alerts).items()):
                alerts.add_metric([kind], count)
            restores.add_metric([], stats.restores)
            joins.add_metric([], stats.joins)
            for code, count in sorted(dict(stats.refusals).items()):
                refusals.add_metric([str(code)], count)
            for kind, count in sorted(dict(stats.data_messages).items()):
                data_messages.add_metric([kind], count)
            for kind, count in sorted(dict(stats.data_bytes).items()):
                data_bytes.add_metric([kind], count)
            for where, count in sorted(dict(server.failures.counts).items()):
                failures.add_metric([where], count)
        yield from (rooms, participants, published, forwarded, packets, octets, alerts, restores, joins)
        yield from (refusals, data_messages, data_bytes, failures, tasks)


def server_registry(server: RoomApi) -> CollectorRegistry:
    """A registry holding ``server``'s metrics only (no process metrics: the agent has them)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ServerCollector(server))
    return registry


class FastPathCollector:
    """``enx_fast_path{name}`` 0/1: which of ``bot.webrtc``'s fast paths this process takes.

    A process-level family (it says what aiortc allows, not what a server does): ``bot serve``
    puts it beside the process's CPU and memory, and the embedded server leaves it to the
    agent, whose ``/metrics`` has it already."""

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("enx_fast_path", _FAST_PATH_HELP, labels=["name"])

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("enx_fast_path", _FAST_PATH_HELP, labels=["name"])
        for name, on in fast_path_gauges().items():
            family.add_metric([name], on)
        yield family


_FAST_PATH_HELP = "1 if this fast path is installed here (bot.webrtc.fast_paths()), 0 if not."
