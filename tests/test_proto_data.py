"""The data messages, sans-I/O: what decodes, what does not (and why), and the round trip."""

from __future__ import annotations

from typing import Any

import pytest

from bot.proto import (
    CHAT_MAX_BYTES,
    DataReceived,
    ErrorCode,
    RemoteProtocolError,
    SendData,
    data_size,
    decode_client,
    decode_server,
    encode,
    nesting,
)


def test_send_data_round_trips_through_the_codec_as_the_web_sdk_shapes_it() -> None:
    event = SendData(message={"a": [1, "é"]}, broadcast=False, clients=("c1", "c2"), type="user_data")
    name, args = encode(event)
    assert name == "sendDataStreamToRoom"
    assert args == (
        {"msg": {"a": [1, "é"]}, "broadcast": False, "clients": ["c1", "c2"], "type": "user_data"},
    )
    back = decode_client(name, args)
    assert back == event and isinstance(back, SendData)
    assert back.size == data_size({"a": [1, "é"]}) == len('{"a":[1,"é"]}'.encode())


def test_broadcast_drops_clients_and_duplicates_count_once() -> None:
    one = SendData.from_payload({"msg": "x", "broadcast": True, "clients": ["a"], "type": "chat"})
    assert one.clients == ()
    many = SendData.from_payload({"msg": "x", "broadcast": False, "clients": ["b", "a", "b"], "type": "chat"})
    assert many.clients == ("b", "a")


@pytest.mark.parametrize(
    "payload",
    [
        None,
        "text",
        [],
        {"broadcast": True, "type": "chat"},
        {"msg": "", "broadcast": True, "type": "chat"},
        {"msg": 0, "broadcast": True, "type": "chat"},
        {"msg": "x", "type": "chat"},
        {"msg": "x", "broadcast": 1, "type": "chat"},
        {"msg": "x", "broadcast": True},
        {"msg": "x", "broadcast": True, "type": "data-internal-in"},
        {"msg": "x", "broadcast": False, "type": "chat"},
        {"msg": "x", "broadcast": False, "clients": [], "type": "chat"},
        {"msg": "x", "broadcast": False, "clients": "c1", "type": "chat"},
        {"msg": "x", "broadcast": False, "clients": [None], "type": "chat"},
        {"msg": "x", "broadcast": False, "clients": ["c" * 129], "type": "chat"},
        {"msg": "x", "broadcast": False, "clients": ["c"] * 20_001, "type": "chat"},
    ],
)
def test_malformed_requests_name_what_is_wrong(payload: Any) -> None:
    with pytest.raises(RemoteProtocolError) as err:
        decode_client("sendDataStreamToRoom", [payload])
    assert err.value.code == ErrorCode.MALFORMED_REQUEST
    assert "sendDataStreamToRoom" in str(err.value)


def test_messages_nest_at_most_64_levels() -> None:
    def deep(n: int) -> Any:
        value: Any = "leaf"
        for i in range(n):
            value = [value] if i % 2 else {"k": value}
        return value

    assert nesting(deep(64)) == 64 and nesting("flat") == 0 and nesting([1, {"a": []}]) == 3
    assert SendData.from_payload({"msg": deep(64), "broadcast": True, "type": "user_data"}).size > 0
    for n in (65, 5000):  # refused without recursing, however deep
        with pytest.raises(RemoteProtocolError, match="nested more than 64"):
            SendData.from_payload({"msg": deep(n), "broadcast": True, "type": "user_data"})


def test_size_is_measured_not_refused_by_the_decoder() -> None:
    """The limit is the relay's decision (code 1195), so the decoder only measures."""
    big = SendData.from_payload({"msg": "x" * (CHAT_MAX_BYTES + 1), "broadcast": True, "type": "chat"})
    assert big.size == CHAT_MAX_BYTES + 3


def test_received_data_keeps_the_wire_spelling_and_survives_odd_values() -> None:
    wire = {
        "type": "chat",
        "message": "hi",
        "broadcast": False,
        "sender": "alice",
        "senderId": "c1",
        "receipients": ["c2"],
        "timestamp": 1764748800123,
        "future": {"x": 1},
    }
    event = decode_server("onDataStreamToRoom", [wire])
    assert isinstance(event, DataReceived) and event.chat and event.recipients == ("c2",)
    assert event.to_payload() == wire  # unknown fields are kept
    assert encode(event) == ("onDataStreamToRoom", (wire,))
    # a timestamp that is not a usable number is 0, never an exception
    for odd in (float("nan"), float("inf"), 1e300):
        assert DataReceived.from_payload({**wire, "timestamp": odd}).timestamp == 0
    # a broadcast has no receipients; anything but chat is user data to the app
    other = DataReceived.from_payload({"type": "user_data", "message": {"k": 1}, "broadcast": True})
    assert not other.chat and "receipients" not in other.to_payload()
    with pytest.raises(RemoteProtocolError):
        DataReceived.from_payload({"type": 5})
