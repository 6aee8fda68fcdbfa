"""Chat and custom data between real EnxRtc clients through the real room server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiortc.mediastreams import AudioStreamTrack

from bot.proto import CHAT_MAX_BYTES, USER_DATA_MAX_BYTES, ErrorCode
from bot.rtc import CALLBACK_NAMES, EnxRtc, RoomError
from bot.server import RoomServer

DATA = {"audio": False, "video": False, "data": True}

pytestmark = pytest.mark.timeout(60)


class Calls:
    """Every callback of one EnxRtc, in order; ``wait_for`` one."""

    def __init__(self, rtc: EnxRtc) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._changed = asyncio.Event()
        for name in CALLBACK_NAMES:
            setattr(rtc, name, self._recorder(name))

    def _recorder(self, name: str) -> Callable[[dict[str, Any]], None]:
        def record(payload: dict[str, Any]) -> None:
            self.calls.append((name, payload))
            self._changed.set()

        return record

    def of(self, name: str) -> list[dict[str, Any]]:
        return [p for n, p in self.calls if n == name]

    async def wait_for(self, name: str, count: int = 1, within: float = 10.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(within):
            while len(self.of(name)) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.of(name)


@pytest.fixture
async def join(room_server: RoomServer, room: dict[str, Any]) -> Any:
    clients: list[EnxRtc] = []

    async def make(name: str, local_info: dict[str, Any] | None = None, **kw: Any) -> tuple[EnxRtc, Calls]:
        rtc = EnxRtc(label=name, **kw)
        calls = Calls(rtc)
        clients.append(rtc)
        token = room_server.mint_token(room["room_id"], name=name)
        await rtc.join_room(token, DATA if local_info is None else local_info)
        return rtc, calls

    yield make
    for rtc in clients:
        await rtc.disconnect()


async def test_chat_broadcast_and_directed_between_two_bots(join: Any) -> None:
    # alice publishes real audio beside her data: chat does not disturb media, nor the reverse
    alice, a = await join(
        "alice", {"audio": True, "video": False, "data": True}, audio_track=AudioStreamTrack()
    )
    bob, b = await join("bob")
    _carol, c = await join("carol")
    await a.wait_for("on_published_stream")

    ack = await alice.send_message("hello room")
    assert ack == {"result": 0, "type": "chat"}
    for calls in (b, c):
        (got,) = await calls.wait_for("on_message_received")
        assert got["type"] == "chat" and got["message"] == "hello room" and got["broadcast"] is True
        assert got["sender"] == "alice" and got["senderId"] == alice.client_id
        assert isinstance(got["timestamp"], int) and got["timestamp"] > 0
        assert "receipients" not in got

    # directed: bob only; carol hears nothing
    assert bob.client_id is not None
    await alice.send_message("just you", broadcast=False, recipients=[bob.client_id])
    got = (await b.wait_for("on_message_received", 2))[1]
    assert got["message"] == "just you" and got["broadcast"] is False
    assert got["receipients"] == [bob.client_id]

    # user data is its own callback, with the object as sent
    await bob.send_user_data({"cmd": "wave", "n": [1, 2]})
    (data,) = await a.wait_for("on_user_data_received")
    assert data["type"] == "user_data" and data["message"] == {"cmd": "wave", "n": [1, 2]}
    assert data["senderId"] == bob.client_id
    await c.wait_for("on_user_data_received")

    await asyncio.sleep(0.3)  # anything in flight arrives
    assert [p["message"] for p in c.of("on_message_received")] == ["hello room"]
    # nobody gets their own broadcast back
    assert a.of("on_message_received") == [] and b.of("on_user_data_received") == []
    # every send was acknowledged through the callback too
    assert [p["result"] for p in a.of("on_acknowledged_send_data")] == [0, 0]
    assert b.of("on_acknowledged_send_data") == [{"result": 0, "type": "user_data"}]


async def test_a_recipient_not_in_the_room_is_an_error_ack(join: Any) -> None:
    alice, a = await join("alice")
    bob, b = await join("bob")
    assert bob.client_id is not None
    with pytest.raises(RoomError) as err:
        await alice.send_message("hi", broadcast=False, recipients=[bob.client_id, "no-such-client"])
    assert err.value.code == ErrorCode.RECIPIENT_NOT_FOUND
    assert "no-such-client" in err.value.msg
    (ack,) = a.of("on_acknowledged_send_data")
    assert ack["result"] == ErrorCode.RECIPIENT_NOT_FOUND and "no-such-client" in ack["msg"]
    await asyncio.sleep(0.3)
    assert b.of("on_message_received") == []  # refused: nobody got it, not even the known one


async def test_oversize_and_bad_calls_are_refused_before_the_wire(join: Any, room_server: RoomServer) -> None:
    alice, a = await join("alice")
    bob, b = await join("bob")
    before = dict(room_server.stats.data_messages)
    deep: Any = "leaf"
    for _ in range(65):
        deep = [deep]

    with pytest.raises(RoomError) as err:
        await alice.send_message("x" * (CHAT_MAX_BYTES + 1))
    assert err.value.code == ErrorCode.DATA_TOO_LARGE
    with pytest.raises(RoomError) as err:
        await alice.send_user_data({"blob": "y" * USER_DATA_MAX_BYTES})
    assert err.value.code == ErrorCode.DATA_TOO_LARGE
    for call in (
        alice.send_message(""),
        alice.send_message(42),  # type: ignore[arg-type]
        alice.send_message("hi", broadcast=False),
        alice.send_message("hi", broadcast="yes"),  # type: ignore[arg-type]
        alice.send_user_data({"x": object()}),
        alice.send_user_data(None),
        alice.send_user_data(0),  # empty to the official client too
        alice.send_user_data(deep),  # the room would refuse it (4121): refused here
    ):
        with pytest.raises(RoomError) as err:
            await call
        assert err.value.code == ErrorCode.INVALID_PARAMETERS, err.value
    assert [p["result"] for p in a.of("on_acknowledged_send_data")] == [1195, 1195] + [1155] * 8
    assert room_server.stats.data_messages == before  # nothing reached the room

    # a larger user-data limit can be asked for, up to the hard cap: 200 kB goes through
    await alice.send_user_data({"blob": "y" * (200 * 1024)}, max_bytes=CHAT_MAX_BYTES)
    (got,) = await b.wait_for("on_user_data_received")
    assert len(got["message"]["blob"]) == 200 * 1024
    # the largest chat message goes through too (2 MB, real sockets)
    big = "z" * (CHAT_MAX_BYTES - 2)  # its JSON adds the two quotes
    await bob.send_message(big)
    (got,) = await a.wait_for("on_message_received", within=20)
    assert got["message"] == big


async def test_sending_needs_data_enabled_and_a_room(join: Any) -> None:
    plain, p = await join("plain", {"audio": False, "video": False})
    with pytest.raises(RoomError) as err:
        await plain.send_message("hi")
    assert err.value.code == ErrorCode.INVALID_PARAMETERS and "data is not enabled" in err.value.msg
    assert p.of("on_acknowledged_send_data")[0]["result"] == ErrorCode.INVALID_PARAMETERS

    never = EnxRtc(label="never")
    with pytest.raises(RoomError) as err:
        await never.send_message("hi")
    assert err.value.code == ErrorCode.INVALID_PARAMETERS  # data off by default, before all else

    gone, _ = await join("gone")
    await gone.disconnect()
    with pytest.raises(RoomError) as err:
        await gone.send_message("hi")
    assert err.value.code == ErrorCode.ROOM_NOT_CONNECTED
