"""Contained failures are counted, not only logged: EnxRtc's owner hook, the bot's
``enx_failures_total{where}``, and ``enx_fast_path`` on the room server's ``/metrics``."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from test_recorder import _publisher

from bot.agent.bot.run import Bot
from bot.agent.config import parse_config
from bot.agent.ops.observe import NullObserver
from bot.proto import IN_ROOM, ErrorCode
from bot.rtc import EnxRtc
from bot.server import RoomServer
from bot.webrtc import fast_paths


async def test_a_failing_callback_reaches_the_owner_hook_and_the_room_goes_on(
    room_server: RoomServer,
) -> None:
    room_id = room_server.create_room(name="hooks")["room_id"]
    seen: list[tuple[str, Exception]] = []

    def hook(name: str, exc: Exception) -> None:
        seen.append((name, exc))
        raise ValueError("the hook fails too")  # logged (callback_error_hook_failed), not raised

    rtc = EnxRtc(on_callback_error=hook)
    connected = asyncio.Event()

    def on_room_connected(_payload: dict[str, Any]) -> None:
        connected.set()
        raise RuntimeError("app bug")

    rtc.on_room_connected = on_room_connected
    token = room_server.mint_token(room_id, name="hooked", role="participant", user_ref="hooked")
    await rtc.join_room(token, {"audio": False, "video": False, "name": "hooked"}, {})
    try:
        await asyncio.wait_for(connected.wait(), 10)
        assert [(name, type(exc)) for name, exc in seen] == [("on_room_connected", RuntimeError)]
        assert rtc.phase in IN_ROOM
        assert [u["name"] for u in room_server.room_view(room_id)["participants"]] == ["hooked"]
    finally:
        await rtc.disconnect()
    assert (await rtc.wait_disconnected())["cause"] == int(ErrorCode.NORMAL_DISCONNECT)


class Failures(NullObserver):
    def __init__(self) -> None:
        self.where: list[str] = []

    def failure(self, where: str) -> None:
        self.where.append(where)


class BuggyBot(Bot):
    """A bot whose join/leave logging breaks: what an app's callback bug looks like."""

    def _user_event(self, event: str, user: dict[str, Any]) -> None:
        if event == "user_connected":
            raise RuntimeError("bug in the bot's callback")
        super()._user_event(event, user)


@pytest.mark.slow
async def test_a_bot_counts_its_failing_callback(room_server: RoomServer) -> None:
    room_id = room_server.create_room(name="counted")["room_id"]
    media = {"width": 160, "height": 96, "fps": 10}
    cfg = parse_config({"token": "t", "bots": [{"name": "b", "media": media}]}, {})
    token = room_server.mint_token(room_id, name="b", role="participant", user_ref="b")
    events = Failures()
    bot = BuggyBot(cfg.bots[0], token, events=events)
    task = asyncio.create_task(bot.run())
    alice = None
    try:
        await asyncio.wait_for(bot.published.wait(), 15)
        alice, _ = await _publisher(room_server, room_id, "alice")
        for _ in range(40):
            if "callback:on_user_connected" in events.where:
                break
            await asyncio.sleep(0.25)
        assert events.where == ["callback:on_user_connected"]
        assert bot.rtc is not None and bot.rtc.phase in IN_ROOM  # the bot stays in its room
    finally:
        bot.stop()
        await asyncio.wait_for(task, 10)
        if alice is not None:
            await alice.disconnect()


async def test_the_server_metrics_say_which_fast_paths_are_on(room_server: RoomServer) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{room_server.url}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    lines = {line for line in text.splitlines() if line.startswith("enx_fast_path{")}
    expected = {f'enx_fast_path{{name="{n}"}} {float(on)}' for n, on in fast_paths().paths().items()}
    assert expected <= lines, lines
    assert f'enx_fast_path{{name="tested"}} {float(fast_paths().tested)}' in lines
    assert expected and all(line.endswith("1.0") for line in expected)  # the locked aiortc
