"""The waiting-room, floor and duration events, sans I/O: wire names, round trips, garbage."""

from __future__ import annotations

from typing import Any

import pytest

from bot.proto import (
    CLIENT_EVENTS,
    SERVER_EVENTS,
    ApproveAwaitedUser,
    ConferenceRemainingDuration,
    DenyAwaitedUser,
    DenyFloor,
    ErrorCode,
    FloorGranted,
    FloorRequested,
    GrantFloor,
    ReleaseFloor,
    RemoteProtocolError,
    RequestFloor,
    RoomAllowed,
    RoomAwaited,
    RoomConnected,
    RoomDisconnected,
    UserAwaited,
    UserInfo,
    decode_client,
    decode_server,
    encode,
)
from bot.rtc import RoomError, RoomInfo


def test_wire_names_are_registered() -> None:
    for name in (
        "approveAwaitedUser",
        "denyAwaitedUser",
        "requestFloor",
        "grantFloor",
        "denyFloor",
        "releaseFloor",
    ):
        assert name in CLIENT_EVENTS, name
    for name in (
        "room-awaited",
        "user-awaited",
        "room-allowed",
        "floor-requested",
        "floor-granted",
        "floor-denied",
        "floor-released",
        "conference-remaining-duration",
        "room-disconnected",
    ):
        assert name in SERVER_EVENTS, name


@pytest.mark.parametrize(
    "event",
    [
        ApproveAwaitedUser(client_id="abc"),
        DenyAwaitedUser(client_id="abc"),
        RequestFloor(),
        GrantFloor(client_id="c1"),
        DenyFloor(client_id="c1"),
        ReleaseFloor(client_id="c1"),
    ],
)
def test_client_events_round_trip(event: Any) -> None:
    name, args = encode(event)
    assert decode_client(name, args) == event


@pytest.mark.parametrize(
    "event",
    [
        RoomAwaited(event_type="knock"),
        RoomAwaited(event_type="wait_for_moderator"),
        UserAwaited(user=UserInfo(client_id="c", name="n", role="participant")),
        RoomAllowed(),
        FloorRequested(client_id="c", name="n"),
        FloorGranted(client_id="c", name="n", moderator_id="m"),
        ConferenceRemainingDuration(time_left=5),
        RoomDisconnected(cause=2003, msg="conference-expired"),
    ],
)
def test_server_events_round_trip(event: Any) -> None:
    name, args = encode(event)
    assert decode_server(name, args) == event


def test_request_floor_needs_no_argument_but_refuses_garbage() -> None:
    assert decode_client("requestFloor", []) == RequestFloor()
    assert decode_client("requestFloor", [{}]) == RequestFloor()
    for bad in ([1], ["x"], [[1]]):
        with pytest.raises(RemoteProtocolError) as err:
            decode_client("requestFloor", bad)
        assert err.value.code == ErrorCode.MALFORMED_REQUEST


@pytest.mark.parametrize(
    "name", ["approveAwaitedUser", "denyAwaitedUser", "grantFloor", "denyFloor", "releaseFloor"]
)
@pytest.mark.parametrize(
    "args",
    [
        [],
        [None],
        [3],
        ["abc"],
        [{}],
        [{"clientId": 7}],
        [{"clientId": ""}],
        [{"clientId": "z" * 65}],
        [{"clientId": False}],
    ],
)
def test_moderator_requests_refuse_garbage_with_4121(name: str, args: list[Any]) -> None:
    with pytest.raises(RemoteProtocolError) as err:
        decode_client(name, args)
    assert err.value.code == ErrorCode.MALFORMED_REQUEST


def test_garbage_from_the_server_is_a_protocol_error() -> None:
    for name, payload in (
        ("room-awaited", {"event_type": "lobby"}),
        ("room-awaited", []),
        ("conference-remaining-duration", {"timeLeft": "5"}),
        ("room-disconnected", {"cause": 2003}),
        ("floor-granted", {"name": "no id"}),
    ):
        with pytest.raises(RemoteProtocolError):
            decode_server(name, [payload])


def test_room_connected_carries_the_lecture_and_waiting_lists() -> None:
    me = UserInfo(client_id="m", name="mod", role="moderator")
    plain = RoomConnected(room_id="r", client_id="m", user=me).to_payload()
    for key in ("raisedHands", "approvedHands", "floorInvites", "awaitedParticipants"):
        assert plain[key] == [], key
    hands = [{"clientId": "p", "name": "student"}]
    filled = RoomConnected(room_id="r", client_id="m", user=me, extra={"raisedHands": hands}).to_payload()
    assert filled["raisedHands"] == hands and filled["approvedHands"] == []
    assert RoomConnected.from_payload(filled).to_payload()["raisedHands"] == hands


@pytest.mark.parametrize("bad", [0, -1, "60", True, float("nan"), float("inf")])
def test_room_info_wait_timeout_is_checked(bad: Any) -> None:
    with pytest.raises(RoomError) as err:
        RoomInfo.from_dict({"wait_timeout_s": bad})
    assert err.value.code == ErrorCode.INVALID_PARAMETERS
    assert RoomInfo.from_dict({"wait_timeout_s": 5}).wait_timeout_s == 5.0
    assert RoomInfo.from_dict({}).wait_timeout_s == 120.0
