"""The chat bot end to end: ``configs/chatbot.yaml`` as a real process hears, logs and answers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_recorder import BotProcess

from bot.rtc import EnxRtc
from bot.server import RoomServer

pytestmark = pytest.mark.timeout(60)


async def test_the_chat_bot_logs_and_answers_a_real_client(room_server: RoomServer) -> None:
    room_id = room_server.create_room(name="chat")["room_id"]
    token = room_server.mint_token(room_id, name="chatbot", role="participant", user_ref="cb")
    bot = await BotProcess.start("configs/chatbot.yaml", {"ENX_TOKEN": token})
    alice = EnxRtc(label="alice")
    answers: list[dict[str, Any]] = []
    got = asyncio.Event()

    def heard(payload: dict[str, Any]) -> None:
        answers.append(payload)
        got.set()

    alice.on_message_received = heard
    try:
        await bot.wait_for("room_connected")
        await alice.join_room(
            room_server.mint_token(room_id, name="alice"), {"audio": False, "video": False, "data": True}
        )
        await bot.wait_for("user_connected", lambda e: e.get("user") == "alice")
        await alice.send_message("hello bot")
        await alice.send_user_data({"score": 3})
        async with asyncio.timeout(10):
            await got.wait()
        await bot.wait_for("user_data_received")
    finally:
        await alice.disconnect()
        code = await bot.stop()
    assert code == 0, bot.stderr.decode()[-2000:]
    (answer,) = answers
    assert answer["message"] == "alice, you said: hello bot" and answer["broadcast"] is False
    assert answer["sender"] == "chatbot" and answer["receipients"] == [alice.client_id]
    heard_line = next(e for e in bot.events if e["event"] == "message_received")
    assert heard_line["user"] == "alice" and heard_line["user_id"] == alice.client_id
    assert heard_line["text"] == "hello bot" and heard_line["size"] == len('"hello bot"')
    data_line = next(e for e in bot.events if e["event"] == "user_data_received")
    assert data_line["text"] == '{"score":3}' and data_line["sender"] == "alice"
    sent = next(e for e in bot.events if e["event"] == "message_sent")
    assert sent["to"] == [alice.client_id] and sent["broadcast"] is False
