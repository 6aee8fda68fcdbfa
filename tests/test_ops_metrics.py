"""Prometheus metrics: scraped over real HTTP on loopback, changing as the bots report."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.parser import text_string_to_metric_families

from bot.agent.ops.health import HealthServer
from bot.agent.ops.metrics import Metrics, MetricsAddress, metrics_address
from bot.agent.ops.observe import BotState, NullObserver, Observers


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def scrape(
    session: aiohttp.ClientSession, url: str
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with session.get(url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return samples(await resp.text())


def state(s: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("enx_bots", (("state", s),))


def plain(name: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, ())


@pytest.fixture
async def served() -> AsyncIterator[tuple[Metrics, HealthServer, aiohttp.ClientSession]]:
    metrics = Metrics(target=3)
    async with (
        HealthServer(metrics, metrics.all_in_rooms, "127.0.0.1", 0) as server,
        aiohttp.ClientSession() as s,
    ):
        yield metrics, server, s


async def test_metrics_are_served_and_follow_the_bots(
    served: tuple[Metrics, HealthServer, aiohttp.ClientSession],
) -> None:
    metrics, server, session = served
    before = await scrape(session, server.url)
    assert before[plain("enx_bots_target")] == 3
    for s in BotState:  # every state is there from the start, at 0
        assert before[state(s.value)] == 0
    assert before[plain("enx_bot_reconnects_total")] == 0
    assert before[plain("enx_bot_join_latency_seconds_count")] == 0
    assert ("process_resident_memory_bytes", ()) in before

    for bot in ("a", "b", "c"):
        metrics.bot_state(bot, "joining")
    metrics.bot_state("a", "connected")
    metrics.join_latency("a", 0.04)
    metrics.bot_state("b", "connected")
    metrics.join_latency("b", 0.3)
    metrics.bot_state("c", "failed")
    metrics.bot_state("b", "reconnecting")
    metrics.reconnect("b")
    metrics.reconnect("b")
    metrics.bandwidth_alert("a")
    metrics.fallback("a")
    metrics.bot_state("a", "audio-only")
    metrics.media("a", sent_bytes=1000, sent_packets=10, recv_bytes=500, recv_packets=5, lost=1)
    metrics.media("a", sent_bytes=1500, sent_packets=15, recv_bytes=800, recv_packets=8, lost=1)
    metrics.media("a", sent_bytes=200, sent_packets=2)  # a new peer connection: counting restarts
    metrics.media("b", sent_bytes=100, sent_packets=1)
    metrics.room_participants("room-1", 4)

    after = await scrape(session, server.url)
    assert after[state("connected")] == 0
    assert after[state("audio-only")] == 1
    assert after[state("reconnecting")] == 1
    assert after[state("failed")] == 1
    assert after[state("joining")] == 0
    assert after[plain("enx_bot_join_failures_total")] == 1
    assert after[plain("enx_bot_reconnects_total")] == 2
    assert after[plain("enx_bot_bandwidth_alerts_total")] == 1
    assert after[plain("enx_bot_fallbacks_total")] == 1
    assert after[plain("enx_bot_join_latency_seconds_count")] == 2
    assert after[plain("enx_bot_join_latency_seconds_sum")] == pytest.approx(0.34)
    assert after[("enx_bot_join_latency_seconds_bucket", (("le", "0.05"),))] == 1
    assert after[("enx_bot_join_latency_seconds_bucket", (("le", "0.5"),))] == 2
    assert after[plain("enx_media_sent_bytes_total")] == 1500 + 200 + 100
    assert after[plain("enx_media_sent_packets_total")] == 15 + 2 + 1
    assert after[plain("enx_media_received_bytes_total")] == 800
    assert after[plain("enx_media_received_packets_total")] == 8
    assert after[plain("enx_media_packets_lost_total")] == 1
    assert after[("enx_room_participants", (("room", "room-1"),))] == 4

    metrics.bot_state("b", "connected")
    metrics.bot_state("a", "connected")
    metrics.outcome("a", "completed")
    metrics.outcome("b", "lost", "2002")
    last = await scrape(session, server.url)
    assert last[state("left")] == 1
    assert last[state("lost")] == 1
    assert last[state("connected")] == 0
    assert last[plain("enx_bot_sessions_lost_total")] == 1
    assert sum(last[state(s.value)] for s in BotState) == 3


async def test_each_metrics_owns_its_registry() -> None:
    one, two = Metrics(), Metrics()
    one.reconnect("x")
    assert samples(one.render().decode())[plain("enx_bot_reconnects_total")] == 1
    assert samples(two.render().decode())[plain("enx_bot_reconnects_total")] == 0


async def test_extra_registries_are_served_too() -> None:
    """The embedded room server's registry (its own metrics) on the same /metrics."""
    server_registry = CollectorRegistry()
    rooms = Gauge("enx_server_rooms", "Rooms.", registry=server_registry)
    rooms.set(2)
    metrics = Metrics()
    async with (
        HealthServer(metrics, lambda: True, "127.0.0.1", 0, registries=[server_registry]) as server,
        aiohttp.ClientSession() as session,
    ):
        got = await scrape(session, server.url)
    assert got[plain("enx_server_rooms")] == 2
    assert plain("enx_bots_target") in got


def test_readiness_from_states() -> None:
    m = Metrics()
    assert not m.all_in_rooms()  # nobody yet
    m.bot_state("a", "joining")
    assert not m.all_in_rooms()
    m.bot_state("a", "connected")
    assert m.all_in_rooms()
    m.bot_state("b", "joining")
    assert not m.all_in_rooms()
    m.bot_state("b", "audio-only")
    assert m.all_in_rooms()
    m.bot_state("b", "reconnecting")
    assert not m.all_in_rooms()
    m.bot_state("b", "left")  # left on purpose: no longer expected
    assert m.all_in_rooms()
    m.bot_state("c", "failed")
    assert not m.all_in_rooms()
    with pytest.raises(ValueError, match="unknown bot state 'dancing'"):
        m.bot_state("a", "dancing")


def test_metrics_address_from_config_or_env() -> None:
    assert metrics_address(env={}) is None
    assert metrics_address(env={"ENX_METRICS_PORT": ""}) is None
    assert metrics_address(env={"ENX_METRICS_PORT": "9102"}) == MetricsAddress("127.0.0.1", 9102)
    assert metrics_address(env={"ENX_METRICS_PORT": "9102", "ENX_METRICS_HOST": "0.0.0.0"}) == MetricsAddress(
        "0.0.0.0", 9102
    )
    assert metrics_address(env={"ENX_METRICS_PORT": "0", "ENX_METRICS_HOST": "127.0.0.1"}) == MetricsAddress(
        "127.0.0.1", 0
    )
    assert metrics_address(9200, env={"ENX_METRICS_PORT": "9102"}) == MetricsAddress("127.0.0.1", 9200)
    with pytest.raises(ValueError, match="ENX_METRICS_PORT='nine' is not a TCP port"):
        metrics_address(env={"ENX_METRICS_PORT": "nine"})
    with pytest.raises(ValueError, match="70000"):
        metrics_address(70000, env={})


def test_observers_fan_out_and_survive_a_failing_listener() -> None:
    class Broken(NullObserver):
        def bot_state(self, bot: str, state: str) -> None:
            raise RuntimeError("boom")

    m = Metrics()
    obs = Observers(Broken(), m)
    obs.bot_state("a", "connected")
    obs.reconnect("a")
    assert m.counts()[BotState.CONNECTED] == 1
    assert samples(m.render().decode())[plain("enx_bot_reconnects_total")] == 1


def test_failures_and_fast_paths_are_counted() -> None:
    from bot.agent.rules.retry import retryable

    class Broken(NullObserver):
        def reconnect(self, bot: str) -> None:
            raise RuntimeError("boom")

    m = Metrics()
    obs = Observers(Broken(), m)
    obs.failure("callback:on_room_connected")
    obs.reconnect("a")  # the broken listener is counted through the others
    m.set_fast_paths({"direct_send": True, "lean_intake": False})
    got = samples(m.render().decode())
    assert got[("enx_failures_total", (("where", "callback:on_room_connected"),))] == 1
    assert got[("enx_failures_total", (("where", "observer:Broken"),))] == 1
    assert got[("enx_fast_path", (("name", "direct_send"),))] == 1
    assert got[("enx_fast_path", (("name", "lean_intake"),))] == 0
    assert retryable(None) and retryable(1160) and not retryable(4103) and not retryable(1155)
