"""Bots that chat: logged, counted, answered (receive.reply), through the real room server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import structlog

from bot.agent.bot import Bot
from bot.agent.config import ConfigError, parse_config
from bot.agent.ops.metrics import Metrics
from bot.agent.ops.observe import BotObserver, Observers
from bot.agent.ops.report import RunRecorder
from bot.proto import ErrorCode
from bot.rtc import RoomError
from bot.server import RoomServer

pytestmark = pytest.mark.timeout(60)

DATA_ONLY = {"audio": False, "video": False, "data": True}


async def _until(check: Callable[[], bool], within: float = 10.0, what: str = "") -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - polling what the bots logged
            await asyncio.sleep(0.02)


@pytest.fixture
async def bots(room_server: RoomServer) -> AsyncIterator[Callable[..., Any]]:
    """Start bots from config entries in one room; returns them once every one is in it."""
    room_id = room_server.create_room(name="chat")["room_id"]
    started: list[tuple[Bot, asyncio.Task[Any]]] = []

    async def start(entries: list[dict[str, Any]], metrics: BotObserver) -> list[Bot]:
        cfg = parse_config({"server": "embedded", "bots": entries}, {})
        out = []
        for bot_cfg in cfg.bots:
            bot = Bot(bot_cfg, room_server.mint_token(room_id, name=bot_cfg.name), events=metrics)
            started.append((bot, asyncio.create_task(bot.run())))
            out.append(bot)
        await _until(lambda: all(b.rtc is not None and b.rtc.client_id for b in out), what="joined")
        await _until(lambda: all(len(b.rtc.get_user_list()) == len(out) for b in out if b.rtc), what="met")
        return out

    yield start
    for bot, task in started:
        bot.stop()
        await asyncio.wait_for(task, 10)


def _of(logs: list[dict[str, Any]], event: str, bot: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == event and e.get("bot") == bot]


async def test_bots_chat_log_count_and_answer(bots: Any) -> None:
    metrics, recorder = Metrics(), RunRecorder()
    with structlog.testing.capture_logs() as logs:
        echo, talker, quiet = await bots(
            [
                {
                    "name": "echo",
                    "local_info": DATA_ONLY,
                    "receive": {"reply": {"text": "got {message}, {sender}"}},
                },
                {"name": "talker", "local_info": DATA_ONLY},
                {"name": "quiet", "local_info": DATA_ONLY, "receive": {"log_messages": False}},
            ],
            Observers(metrics, recorder),
        )
        long = "hello " + "x" * 300
        ack = await talker.send_message(long)
        assert ack["result"] == 0
        # the echo bot answers the talker alone, and the answer quotes at most 200 characters
        await _until(lambda: bool(_of(logs, "message_received", "talker")), what="the answer")
        (answer,) = _of(logs, "message_received", "talker")
        assert answer["user"] == answer["sender"] == "echo"
        assert answer["user_id"] == answer["sender_id"] == echo.rtc.client_id  # type: ignore[union-attr]
        assert answer["text"].startswith("got hello xxx")
        assert answer["size"] == len("got " + long[:200] + ", talker") + 2  # the quote is cut at 200
        assert answer["broadcast"] is False

        (heard,) = _of(logs, "message_received", "echo")
        assert heard["size"] == len(long) + 2 and heard["text"] == long[:200] and heard["truncated"] is True
        await _until(lambda: bool(_of(logs, "message_received", "quiet")), what="quiet hearing it")
        (quiet_heard,) = _of(logs, "message_received", "quiet")
        assert "text" not in quiet_heard and quiet_heard["size"] == len(long) + 2  # contents kept out

        # directed, by name: only the quiet bot hears it, and the echo bot does not answer
        # directed messages (answer: broadcast), so two echo bots never answer each other forever
        await talker.send_user_data({"cmd": "ping"}, to=["quiet"])
        await talker.send_message("psst", to="echo")
        await _until(lambda: bool(_of(logs, "user_data_received", "quiet")), what="the user data")
        (sent,) = _of(logs, "user_data_sent", "talker")
        assert sent["user"] == "quiet" and sent["user_id"] == quiet.rtc.client_id  # type: ignore[union-attr]
        assert sent["to"] == [sent["user_id"]] and sent["broadcast"] is False
        assert _of(logs, "user_data_received", "quiet")[0]["sender"] == "talker"
        await _until(lambda: len(_of(logs, "message_received", "echo")) == 2, what="the directed chat")
        await asyncio.sleep(0.3)
        assert len(_of(logs, "message_received", "talker")) == 1  # still the one answer
        assert _of(logs, "user_data_received", "echo") == []
        assert [e["event"] for e in logs if e.get("bot") == "talker" and e["event"].endswith("_sent")] == [
            "message_sent",
            "user_data_sent",
            "message_sent",
        ]

        # an unknown recipient: the room refuses, the bot logs it and the caller hears it
        with pytest.raises(RoomError) as err:
            await talker.send_message("hi", to=["nobody-of-that-name"])
        assert err.value.code == ErrorCode.RECIPIENT_NOT_FOUND
        (failed,) = _of(logs, "send_data_failed", "talker")
        assert failed["code"] == ErrorCode.RECIPIENT_NOT_FOUND and failed["type"] == "chat"

    text = metrics.render().decode()
    # sent: talker 2 chats + 1 user data, echo 1 answer; received: 2 + 1 (broadcast) + 1 + 1 + 1
    assert 'enx_data_messages_total{direction="sent",type="chat"} 3.0' in text
    assert 'enx_data_messages_total{direction="sent",type="user_data"} 1.0' in text
    assert 'enx_data_messages_total{direction="received",type="chat"} 4.0' in text
    assert 'enx_data_messages_total{direction="received",type="user_data"} 1.0' in text
    ping = len(b'{"cmd":"ping"}')
    assert f'enx_data_bytes_total{{direction="received",type="user_data"}} {ping}.0' in text
    report = recorder.to_dict()
    assert report["summary"]["data"] == {
        "chat_sent": 3,
        "chat_received": 4,
        "user_data_sent": 1,
        "user_data_received": 1,
    }
    talker_report = next(b for b in report["bots"] if b["name"] == "talker")
    assert talker_report["data"] == {
        "chat_sent": 2,
        "chat_received": 1,
        "user_data_sent": 1,
        "user_data_received": 0,
    }


async def test_answers_stop_at_max_and_answer_all_answers_directed_chat(bots: Any) -> None:
    metrics = Metrics()
    with structlog.testing.capture_logs() as logs:
        echo, talker = await bots(
            [
                {
                    "name": "echo",
                    "local_info": DATA_ONLY,
                    "receive": {"reply": {"text": "ok", "answer": "all", "max": 2}},
                },
                {"name": "talker", "local_info": DATA_ONLY},
            ],
            metrics,
        )
        for i in range(4):
            await talker.send_message(f"m{i}", to=["echo"])
        await _until(lambda: len(_of(logs, "message_received", "echo")) == 4, what="all four")
        await _until(lambda: len(_of(logs, "message_received", "talker")) == 2, what="two answers")
        await asyncio.sleep(0.3)
        assert len(_of(logs, "message_received", "talker")) == 2
        assert len(_of(logs, "reply_limit_reached", "echo")) == 1
        assert echo.chat.replies > 2


def test_reply_config_is_validated_with_did_you_mean() -> None:
    def parse(receive: dict[str, Any], local_info: dict[str, Any] = DATA_ONLY) -> Any:
        return parse_config(
            {"server": "embedded", "bots": [{"name": "b", "local_info": local_info, "receive": receive}]}, {}
        )

    for receive, local_info, needle in [
        ({"reply": {"txt": "x"}}, DATA_ONLY, "did you mean 'text'"),
        ({"replies": {"text": "x"}}, DATA_ONLY, "did you mean 'reply'"),
        ({"log_message": False}, DATA_ONLY, "did you mean 'log_messages'"),
        ({"reply": {"text": "x", "answer": "al"}}, DATA_ONLY, "did you mean 'all'"),
        ({"reply": {"text": " "}}, DATA_ONLY, "reply.text is empty"),
        ({"reply": {"text": "x", "max": 0}}, DATA_ONLY, "1 or more"),
        ({"reply": {"text": "x"}}, {"audio": False, "video": False}, "needs local_info: {data: true}"),
        ({"log_messages": "no"}, DATA_ONLY, "true or false"),
    ]:
        with pytest.raises(ConfigError) as err:
            parse(receive, local_info)
        assert needle in str(err.value), (receive, str(err.value))
    cfg = parse({"reply": {"text": "hi {sender}: {message}"}, "log_messages": False})
    reply = cfg.bots[0].receive.reply
    assert reply.render("ann", "y" * 300) == "hi ann: " + "y" * 200
