"""The moderation messages, sans-I/O: what decodes, what is refused (naming the field, never
echoing it), and that every event survives encode -> decode."""

from __future__ import annotations

from typing import Any

import pytest

from bot.proto import (
    HARD_MUTE_USER_EVENTS,
    DropRequest,
    ErrorCode,
    HardMuteRoom,
    HardUnmuteRoom,
    RemoteProtocolError,
    RoomDisconnected,
    RoomHardMuted,
    RoomHardUnmuted,
    RoomRecordOff,
    RoomRecordOn,
    StartRecord,
    StopRecord,
    decode_client,
    decode_server,
    encode,
    hard_mute_user_event,
)
from bot.proto.names import FLUTTER_CALLBACKS, SERVER_EVENT_NAMES


def test_drop_keeps_the_official_clients_leave_and_reads_a_moderators_drop() -> None:
    assert decode_client("drop", [{"self": True}]).leave
    assert decode_client("drop", []).leave
    drop = decode_client("drop", [{"all": False, "clientIds": ["a", "b", "a"]}])
    assert isinstance(drop, DropRequest) and drop.client_ids == ("a", "b") and not drop.leave
    assert decode_client("drop", [{"all": True}]) == DropRequest(all=True)
    assert encode(DropRequest()) == ("drop", ({"self": True},))
    assert encode(DropRequest(client_ids=("a",))) == ("drop", ({"all": False, "clientIds": ["a"]},))


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("drop", ["me"]),
        ("drop", [{"clientIds": "a"}]),
        ("drop", [{"clientIds": [None]}]),
        ("drop", [{"clientIds": []}]),
        ("drop", [{"all": 1}]),
        ("drop", [{"clientIds": ["z" * 129]}]),
        ("drop", [{"clientIds": [str(i) for i in range(257)]}]),
        ("hardMute", ["x"]),
        ("startRecord", [3]),
        ("hardmute-user-audio", []),
        ("hardmute-user-audio", [{"clientId": ""}]),
        ("hardunmute-user-video", [{"clientId": ["a"]}]),
        ("hardmute-user-video", [{"clientId": "q" * 5000}]),
    ],
)
def test_bad_moderation_payloads_are_refused_with_a_code_and_never_echoed(name: str, args: list[Any]) -> None:
    with pytest.raises(RemoteProtocolError) as err:
        decode_client(name, args)
    assert err.value.code in (ErrorCode.MALFORMED_REQUEST, ErrorCode.INVALID_PARAMETERS)
    assert len(str(err.value)) < 200 and "qqqq" not in str(err.value) and "zzzz" not in str(err.value)


def test_requests_without_payload_decode_and_encode() -> None:
    for cls in (HardMuteRoom, HardUnmuteRoom, StartRecord, StopRecord):
        assert decode_client(cls.WIRE, []) == cls()
        assert decode_client(cls.WIRE, [{}]) == cls()
        assert encode(cls()) == (cls.WIRE, ())
    assert decode_client("hardUnmute", []).MUTED is False


def test_per_user_hard_mutes_go_both_ways_under_one_name() -> None:
    assert [c.WIRE for c in HARD_MUTE_USER_EVENTS] == [
        "hardmute-user-audio",
        "hardunmute-user-audio",
        "hardmute-user-video",
        "hardunmute-user-video",
    ]
    for cls in HARD_MUTE_USER_EVENTS:
        assert hard_mute_user_event(cls.KIND, cls.MUTED) is cls
        request = cls(client_id="c1")
        assert decode_client(*encode(request)) == request
        notice = cls(client_id="c1", moderator="m1", msg="hard-muted")
        assert decode_server(*encode(notice)) == notice


def test_notices_round_trip() -> None:
    for notice in (
        RoomHardMuted(moderator="m", msg="Room is muted"),
        RoomHardUnmuted(moderator="m", msg="Room is un-muted"),
        RoomRecordOn(moderator="m", msg="on"),
        RoomRecordOff(moderator="m", msg="off"),
        RoomDisconnected(moderator="m"),
    ):
        assert decode_server(*encode(notice)) == notice
    _, args = encode(RoomDisconnected())
    assert args == ({"cause": {"cause": 2001, "msg": "disconnected-by-moderator"}},)
    assert encode(RoomHardMuted(moderator="m"))[1][0]["status"] is True
    with pytest.raises(RemoteProtocolError):
        decode_server("room-disconnected", [{"cause": "no"}])


def test_codes_and_names() -> None:
    assert int(ErrorCode.DISCONNECTED_BY_MODERATOR) == 2001
    assert int(ErrorCode.DROP_NOT_PERMITTED) == 5116
    assert (int(ErrorCode.HARD_MUTE_NOT_PERMITTED), int(ErrorCode.HARD_UNMUTE_NOT_PERMITTED)) == (5001, 5002)
    for wire in ("room-disconnected", "room-muted", "room-unmuted", "room-record-on", "room-record-off"):
        assert wire in SERVER_EVENT_NAMES
    pythons = {p for p, _ in FLUTTER_CALLBACKS.values()}
    assert {f"on_{SERVER_EVENT_NAMES[c.WIRE]}" for c in HARD_MUTE_USER_EVENTS} <= pythons
