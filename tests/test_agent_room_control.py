"""The agent in waiting rooms, rooms with a duration and lectures: real bots (Agent, in this
process) on a real room server, judged by their outcomes, exit codes and log lines."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import structlog
from conftest import APP_ID, APP_KEY

from bot.agent.bot.run import Outcome
from bot.agent.config import parse_config
from bot.agent.errors import EXIT_NOT_ADMITTED, EXIT_OK
from bot.agent.swarm.runner import Agent
from bot.server import RoomServer

pytestmark = pytest.mark.timeout(90)

MINUTE_S = 6.0
"""A minute of ``settings.duration`` on the test server (the room's clock counts minutes)."""
NO_MEDIA = {"audio": False, "video": False}


@pytest.fixture
async def fast_server() -> AsyncIterator[RoomServer]:
    server = RoomServer(app_id=APP_ID, app_key=APP_KEY, host="127.0.0.1", port=0, minute_s=MINUTE_S)
    await server.start()
    try:
        yield server
    finally:
        await server.aclose()


@contextlib.contextmanager
def logs() -> Iterator[list[dict[str, Any]]]:
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


def agent(server: RoomServer, room_id: str, bots: list[dict[str, Any]], **top: Any) -> Agent:
    raw = {
        "api_url": server.api_url,
        "app_id": server.app_id,
        "app_key": server.app_key,
        "room_id": room_id,
        "bots": bots,
        **top,
    }
    return Agent(parse_config(raw, {}))


def of(entries: list[dict[str, Any]], event: str, bot: str | None = None) -> list[dict[str, Any]]:
    return [e for e in entries if e["event"] == event and (bot is None or e.get("bot") == bot)]


async def test_a_one_minute_room_ends_and_every_bot_exits_0_with_room_ended(fast_server: RoomServer) -> None:
    room_id = fast_server.create_room(name="short", settings={"duration": 1})["room_id"]
    bots = [
        {"name": "host", "role": "moderator", "local_info": NO_MEDIA},
        {"name": "talker", "local_info": {"audio": True, "video": True}},
        {"name": "late", "join_delay": 2.0, "local_info": NO_MEDIA},
    ]
    run = agent(fast_server, room_id, bots)
    started = time.monotonic()
    with logs() as entries:
        code = await asyncio.wait_for(run.run(), MINUTE_S + 30)
    elapsed = time.monotonic() - started
    assert code == EXIT_OK
    assert {r.name: r.outcome for r in run.results} == {
        n: Outcome.ROOM_ENDED for n in ("host", "talker", "late")
    }
    assert all(r.reason == "conference-expired" for r in run.results)
    assert MINUTE_S - 1 < elapsed < MINUTE_S + 20, elapsed  # it ended when the minute was up
    for name in ("host", "talker", "late"):
        notice = of(entries, "conference_remaining_duration", name)
        assert notice and notice[0]["time_left"] == 1, (name, notice)
        ended = of(entries, "room_disconnected", name)
        assert ended and ended[-1]["cause"] == 2003, (name, ended)
        assert of(entries, "room_connected", name)[0]["t"] < notice[0]["t"] < ended[-1]["t"]
    assert not of(entries, "reconnect")  # a room that ended is not a lost connection
    assert fast_server.room_view(room_id)["participants"] == []


async def test_knock_bots_wait_are_approved_and_join(fast_server: RoomServer) -> None:
    room_id = fast_server.create_room(name="knock", settings={"knock": True})["room_id"]
    bots = [
        {"name": "door", "role": "moderator", "join_delay": 1.5, "stay": 6, "local_info": NO_MEDIA,
         "moderate": {"awaited": "approve"}},
        {"name": "guest{i}", "count": 2, "stay": 3, "local_info": NO_MEDIA},
    ]  # fmt: skip
    run = agent(fast_server, room_id, bots)
    with logs() as entries:
        code = await asyncio.wait_for(run.run(), 40)
    assert code == EXIT_OK
    assert {r.outcome for r in run.results} == {Outcome.COMPLETED}
    for name in ("guest1", "guest2"):
        awaited = of(entries, "room_awaited", name)
        assert awaited and awaited[0]["reason"] == "knock"
        connected = of(entries, "room_connected", name)[0]
        assert connected["waited_ms"] > 1000  # the moderator came 1.5 s later
        assert connected["join_ms"] < connected["waited_ms"]  # waiting is not joining
        result = next(r for r in run.results if r.name == name)
        assert result.join_ms is not None and result.join_ms < connected["waited_ms"]
    approvals = of(entries, "ack_for_approve_awaited_user", "door")
    assert len(approvals) == 2 and all(a["result"] == 0 and a["user"].startswith("guest") for a in approvals)
    assert {e["user"] for e in of(entries, "user_awaited", "door")} == {"guest1", "guest2"}
    assert run.failed == 0 and run.retries == 0


async def test_a_denied_bot_ends_denied_and_a_forgotten_one_wait_timeout(fast_server: RoomServer) -> None:
    denied_room = fast_server.create_room(name="deny", settings={"knock": True})["room_id"]
    bots = [
        {"name": "bouncer", "role": "moderator", "stay": 4, "local_info": NO_MEDIA,
         "moderate": {"awaited": "deny"}},
        {"name": "turned-away", "join_delay": 0.5, "local_info": NO_MEDIA},
    ]  # fmt: skip
    run = agent(fast_server, denied_room, bots)
    with logs() as entries:
        code = await asyncio.wait_for(run.run(), 30)
    assert code == EXIT_NOT_ADMITTED
    outcomes = {r.name: r.outcome for r in run.results}
    assert outcomes == {"bouncer": Outcome.COMPLETED, "turned-away": Outcome.DENIED}
    assert run.retries == 0 and run.failed == 0  # a denial is no join failure and is not retried
    assert of(entries, "room_awaited", "turned-away")
    assert run.first_failure() is not None and "denied" in (run.first_failure() or "")

    lonely_room = fast_server.create_room(name="lonely", settings={"knock": True})["room_id"]
    lonely = agent(
        fast_server,
        lonely_room,
        [{"name": "patient", "local_info": NO_MEDIA, "room_info": {"wait_timeout_s": 1.5}}],
    )
    started = time.monotonic()
    assert await asyncio.wait_for(lonely.run(), 30) == EXIT_NOT_ADMITTED
    assert time.monotonic() - started < 15
    assert [r.outcome for r in lonely.results] == [Outcome.WAIT_TIMEOUT]


async def test_a_lecture_participant_bot_requests_the_floor_and_publishes_once_granted(
    fast_server: RoomServer,
) -> None:
    room_id = fast_server.create_room(name="lecture", settings={"mode": "lecture"})["room_id"]
    bots = [
        {"name": "teacher", "role": "moderator", "stay": 8, "local_info": NO_MEDIA, "moderate": {"floor": "grant"}},
        {"name": "student", "join_delay": 0.5, "stay": 6, "local_info": {"audio": True, "video": True}},
        {"name": "listener", "join_delay": 0.5, "stay": 4, "request_floor": False,
         "local_info": {"audio": True, "video": True}},
    ]  # fmt: skip
    run = agent(fast_server, room_id, bots)
    with logs() as entries:
        code = await asyncio.wait_for(run.run(), 40)
    assert code == EXIT_OK
    requested = of(entries, "floor_requested", "student")
    granted = of(entries, "granted_floor_request", "student")
    published = of(entries, "published_stream", "student")
    assert requested and granted and published
    assert requested[0]["t"] < granted[0]["t"] < published[0]["t"]
    assert of(entries, "floor_request_received", "teacher")[0]["user"] == "student"
    assert of(entries, "process_floor_requested", "teacher")[0]["result"] == 0
    assert not of(entries, "published_stream", "listener")  # no floor asked, none given
    assert not of(entries, "floor_requested", "listener")


def test_config_checks_the_new_keys() -> None:
    base = {"token": "x", "bots": []}
    for bad in (
        {"name": "a", "room_info": {"wait_timeout_s": 0}},
        {"name": "a", "room_info": {"wait_timeout_s": "long"}},
        {"name": "a", "moderate": {"awaited": "approve"}},  # a participant does not moderate
        {"name": "a", "role": "moderator", "moderate": {"floor": "maybe"}},
        {"name": "a", "request_floor": "yes"},
    ):
        with pytest.raises(Exception) as err:
            parse_config({**base, "bots": [bad]}, {})
        assert type(err.value).__name__ == "ConfigError", bad
    ok = parse_config(
        {**base, "bots": [{"name": "m", "role": "moderator", "moderate": {"awaited": "deny"}}]}, {}
    )
    assert ok.bots[0].moderate.awaited == "deny" and ok.bots[0].room_info.wait_timeout_s == 120.0


async def test_a_bot_waiting_to_be_let_in_stops_at_once_when_told(fast_server: RoomServer) -> None:
    room_id = fast_server.create_room(name="knock", settings={"knock": True})["room_id"]
    run = agent(fast_server, room_id, [{"name": "waiter", "local_info": NO_MEDIA}])
    with logs() as entries:
        task = asyncio.create_task(run.run())
        for _ in range(100):
            if of(entries, "room_awaited", "waiter"):
                break
            await asyncio.sleep(0.05)
        assert of(entries, "room_awaited", "waiter")
        stopped = time.monotonic()
        run.stop()
        assert await asyncio.wait_for(task, 10) == EXIT_OK
    assert time.monotonic() - stopped < 3.0
    assert [(r.outcome, r.reason) for r in run.results] == [(Outcome.COMPLETED, "stopped while joining")]
    for _ in range(100):  # the server forgets a waiter whose socket closed
        if fast_server.room_view(room_id)["awaited"] == []:
            break
        await asyncio.sleep(0.05)
    assert fast_server.room_view(room_id)["awaited"] == []


def test_worker_exit_codes_combine_with_not_admitted_last() -> None:
    from bot.agent.errors import EXIT_CONFIG, EXIT_JOIN_FAILED, EXIT_SESSION_LOST
    from bot.agent.swarm.workers import combine

    assert combine([EXIT_OK, EXIT_NOT_ADMITTED]) == EXIT_NOT_ADMITTED
    assert combine([EXIT_NOT_ADMITTED, EXIT_SESSION_LOST]) == EXIT_SESSION_LOST
    assert combine([EXIT_NOT_ADMITTED, -9]) == EXIT_SESSION_LOST  # a killed worker
    assert combine([EXIT_NOT_ADMITTED, EXIT_JOIN_FAILED]) == EXIT_JOIN_FAILED
    assert combine([EXIT_CONFIG, EXIT_NOT_ADMITTED]) == EXIT_CONFIG
    assert combine([EXIT_OK, EXIT_OK]) == EXIT_OK


async def test_a_room_without_duration_has_no_clock(fast_server: RoomServer) -> None:
    room = fast_server.create_room(name="open")
    assert "duration" not in room["settings"]
    run = agent(
        fast_server, room["room_id"], [{"name": "stayer", "stay": MINUTE_S + 2, "local_info": NO_MEDIA}]
    )
    with logs() as entries:
        assert await asyncio.wait_for(run.run(), MINUTE_S + 30) == EXIT_OK
    assert [r.outcome for r in run.results] == [Outcome.COMPLETED]
    assert not of(entries, "conference_remaining_duration")
