"""The room server's relay of chat and custom data, on the wire (bare Socket.IO clients)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from conftest import RawClient

from bot.proto import CHAT_MAX_BYTES, ErrorCode
from bot.server import RoomServer

Connect = Callable[[], Awaitable[RawClient]]
SEND = "sendDataStreamToRoom"
RECEIVED = "onDataStreamToRoom"

pytestmark = pytest.mark.timeout(60)


async def _joined(room_server: RoomServer, room: dict[str, Any], connect: Connect, name: str) -> RawClient:
    client = await connect()
    await client.join(room_server.mint_token(room["room_id"], name=name))
    return client


def chat(msg: Any, clients: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    body = {"msg": msg, "broadcast": clients is None, "clients": clients or [], "type": "chat"}
    return {**body, **extra}


async def test_broadcast_reaches_the_others_only_and_directed_the_listed_only(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    alice = await _joined(room_server, room, raw_client, "alice")
    bob = await _joined(room_server, room, raw_client, "bob")
    carol = await _joined(room_server, room, raw_client, "carol")
    assert bob.client_id and carol.client_id and alice.client_id

    assert await alice.ack(SEND, chat("hi all")) == {"result": 0}
    for client in (bob, carol):
        got = await client.next(RECEIVED)
        assert set(got) == {"type", "message", "broadcast", "sender", "senderId", "timestamp"}
        assert (got["type"], got["message"], got["broadcast"]) == ("chat", "hi all", True)
        assert (got["sender"], got["senderId"]) == ("alice", alice.client_id)

    # the Web SDK's own shape for user data: any JSON object, to two clients (one listed twice)
    body = {
        "msg": {"k": [1, {"x": None}]},
        "broadcast": False,
        "clients": [carol.client_id] * 2,
        "type": "user_data",
    }
    assert await bob.ack(SEND, body) == {"result": 0}
    got = await carol.next(RECEIVED)
    assert got["type"] == "user_data" and got["message"] == {"k": [1, {"x": None}]}
    assert got["receipients"] == [carol.client_id] and got["broadcast"] is False

    # a sender may list itself: then it is a recipient
    assert await carol.ack(SEND, chat("note to self", [carol.client_id])) == {"result": 0}
    assert (await carol.next(RECEIVED))["message"] == "note to self"

    await alice.settle()
    assert alice.payloads(RECEIVED) == []  # never its own broadcast
    assert [p["message"] for p in bob.payloads(RECEIVED)] == ["hi all"]
    assert len(carol.payloads(RECEIVED)) == 3
    assert room_server.stats.data_messages == {"chat": 2, "user_data": 1}

    async with aiohttp.ClientSession() as http, http.get(f"{room_server.url}/metrics") as resp:
        text = await resp.text()
    assert 'enx_server_data_messages_total{type="chat"} 2.0' in text
    assert 'enx_server_data_messages_total{type="user_data"} 1.0' in text


async def test_unknown_recipient_oversize_and_garbage_get_error_acks_and_change_nothing(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    alice = await _joined(room_server, room, raw_client, "alice")
    mallory = await _joined(room_server, room, raw_client, "mallory")
    assert alice.client_id
    before = room_server.room_view(room["room_id"])

    unknown = await mallory.ack(SEND, chat("psst", [alice.client_id, "ghost"]))
    assert unknown["result"] == ErrorCode.RECIPIENT_NOT_FOUND and "ghost" in unknown["msg"]
    over = await mallory.ack(SEND, chat("x" * (CHAT_MAX_BYTES + 10)))
    assert over["result"] == ErrorCode.DATA_TOO_LARGE and "2,048 kB" in over["msg"]

    malformed: list[Any] = [
        "just a string",
        42,
        [1, 2],
        {},
        {"broadcast": True, "type": "chat"},  # no msg
        chat(""),
        chat(None),
        chat(False),
        chat("hi", type="file"),
        chat("hi", type=7),
        chat("hi", broadcast="true"),
        {"msg": "hi", "type": "chat"},  # no broadcast
        chat("hi", broadcast=False),  # directed to nobody
        chat("hi", [42]),
        chat("hi", [""]),
        chat("hi", ["c" * 500]),
        chat("hi", clients="everyone", broadcast=False),
        chat("hi", clients=[alice.client_id] * 20_001, broadcast=False),
        {
            "msg": [
                [
                    [
                        [
                            [
                                [
                                    [
                                        [
                                            [
                                                [
                                                    [
                                                        [
                                                            [
                                                                [
                                                                    [
                                                                        [
                                                                            [
                                                                                [
                                                                                    [
                                                                                        [
                                                                                            [
                                                                                                [
                                                                                                    [
                                                                                                        [
                                                                                                            [
                                                                                                                [
                                                                                                                    [
                                                                                                                        [
                                                                                                                            [
                                                                                                                                [
                                                                                                                                    [
                                                                                                                                        [
                                                                                                                                            [
                                                                                                                                                [
                                                                                                                                                    [
                                                                                                                                                        [
                                                                                                                                                            [
                                                                                                                                                                [
                                                                                                                                                                    [
                                                                                                                                                                        [
                                                                                                                                                                            [
                                                                                                                                                                                [
                                                                                                                                                                                    [
                                                                                                                                                                                        [
                                                                                                                                                                                            [
                                                                                                                                                                                                [
                                                                                                                                                                                                    [
                                                                                                                                                                                                        [
                                                                                                                                                                                                            [
                                                                                                                                                                                                                [
                                                                                                                                                                                                                    [
                                                                                                                                                                                                                        [
                                                                                                                                                                                                                            [
                                                                                                                                                                                                                                [
                                                                                                                                                                                                                                    [
                                                                                                                                                                                                                                        [
                                                                                                                                                                                                                                            [
                                                                                                                                                                                                                                                [
                                                                                                                                                                                                                                                    [
                                                                                                                                                                                                                                                        [
                                                                                                                                                                                                                                                            [
                                                                                                                                                                                                                                                                [
                                                                                                                                                                                                                                                                    [
                                                                                                                                                                                                                                                                        [
                                                                                                                                                                                                                                                                            [
                                                                                                                                                                                                                                                                                [
                                                                                                                                                                                                                                                                                    [
                                                                                                                                                                                                                                                                                        "deep"
                                                                                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                                                                                ]
                                                                                                                                                                                                                                                                            ]
                                                                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                                                                ]
                                                                                                                                                                                                                                                            ]
                                                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                                                ]
                                                                                                                                                                                                                                            ]
                                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                                ]
                                                                                                                                                                                                                            ]
                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                ]
                                                                                                                                                                                                            ]
                                                                                                                                                                                                        ]
                                                                                                                                                                                                    ]
                                                                                                                                                                                                ]
                                                                                                                                                                                            ]
                                                                                                                                                                                        ]
                                                                                                                                                                                    ]
                                                                                                                                                                                ]
                                                                                                                                                                            ]
                                                                                                                                                                        ]
                                                                                                                                                                    ]
                                                                                                                                                                ]
                                                                                                                                                            ]
                                                                                                                                                        ]
                                                                                                                                                    ]
                                                                                                                                                ]
                                                                                                                                            ]
                                                                                                                                        ]
                                                                                                                                    ]
                                                                                                                                ]
                                                                                                                            ]
                                                                                                                        ]
                                                                                                                    ]
                                                                                                                ]
                                                                                                            ]
                                                                                                        ]
                                                                                                    ]
                                                                                                ]
                                                                                            ]
                                                                                        ]
                                                                                    ]
                                                                                ]
                                                                            ]
                                                                        ]
                                                                    ]
                                                                ]
                                                            ]
                                                        ]
                                                    ]
                                                ]
                                            ]
                                        ]
                                    ]
                                ]
                            ]
                        ]
                    ]
                ]
            ],
            "broadcast": True,
            "type": "user_data",
        },
        {"msg": {"nested": [[[[[[]]]]]]}, "broadcast": True, "clients": None, "type": "user_data", "x": 1},
    ]
    for body in malformed[:-1]:
        reply = await mallory.ack(SEND, body)
        assert reply["result"] == ErrorCode.MALFORMED_REQUEST, (str(body)[:80], reply)
        assert isinstance(reply["msg"], str) and reply["msg"]
    assert await mallory.ack(SEND) is not None  # no argument at all
    assert (await mallory.ack(SEND))["result"] == ErrorCode.MALFORMED_REQUEST
    # the last one is odd but valid: a nested object, clients null with a broadcast, an extra key
    assert await mallory.ack(SEND, malformed[-1]) == {"result": 0}

    await alice.settle()
    assert [p["message"] for p in alice.payloads(RECEIVED)] == [{"nested": [[[[[[]]]]]]}]
    after = room_server.room_view(room["room_id"])
    assert [p["name"] for p in after["participants"]] == [p["name"] for p in before["participants"]]
    assert room_server.stats.data_messages == {"user_data": 1}
    # both still talk
    assert await alice.ack(SEND, chat("still here")) == {"result": 0}
    assert (await mallory.next(RECEIVED))["message"] == "still here"


async def test_before_joining_is_4120_and_a_socket_flood_only_closes_that_socket(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    stranger = await raw_client()
    assert (await stranger.ack(SEND, chat("hi")))["result"] == ErrorCode.NOT_JOINED

    alice = await _joined(room_server, room, raw_client, "alice")
    flooder = await _joined(room_server, room, raw_client, "flooder")
    # beyond Engine.IO's message limit (4 MiB) the socket is closed before anything is decoded
    await flooder.sio.emit(SEND, chat("y" * (5 * 1024 * 1024)))
    async with asyncio.timeout(10):
        await flooder.disconnected.wait()
    # the server and the others are unharmed
    newcomer = await _joined(room_server, room, raw_client, "newcomer")
    assert await newcomer.ack(SEND, chat("anyone?")) == {"result": 0}
    assert (await alice.next(RECEIVED))["message"] == "anyone?"
    assert room_server.failures.total() == 0
