"""Lecture mode on the real room server with real EnxRtc clients and real media: a participant
publishes only once granted the floor, stops when it is released, and every floor request is
checked (roles, modes, states, garbage)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from rtc_faults import AV, NO_MEDIA, Recorder, eventually, own_stream, packets

from bot.proto import ErrorCode
from bot.rtc import EnxRtc
from bot.server import RoomServer

pytestmark = pytest.mark.timeout(60)


def lecture_room(server: RoomServer) -> str:
    return str(server.create_room(name="lecture", settings={"mode": "lecture"})["room_id"])


async def join(
    server: RoomServer, room_id: str, name: str, role: str, local: dict[str, Any]
) -> tuple[EnxRtc, Recorder]:
    rtc = EnxRtc(label=name)
    rec = Recorder(rtc)
    await rtc.join_room(server.mint_token(room_id, name=name, role=role), local)
    return rtc, rec


async def test_a_participant_publishes_only_after_the_floor_is_granted(room_server: RoomServer) -> None:
    room_id = lecture_room(room_server)
    teacher, seen = await join(room_server, room_id, "teacher", "moderator", NO_MEDIA)
    student, rec = await join(room_server, room_id, "student", "participant", AV)
    await asyncio.sleep(1.5)  # it would have published by now in a group room
    assert "on_published_stream" not in rec.names()
    assert own_stream(room_server, room_id, student.client_id) is None
    assert "on_stream_added" not in seen.names()

    ack = await student.request_floor()
    assert ack["result"] == 0 and rec.payloads("on_floor_requested") == [ack]
    asked = await seen.wait_for("on_floor_request_received")
    assert asked == {"clientId": student.client_id, "name": "student"}
    await asyncio.sleep(0.5)
    assert own_stream(room_server, room_id, student.client_id) is None  # asking is not having

    granted = await teacher.grant_floor(student.client_id)
    assert granted["result"] == 0 and granted["clientId"] == student.client_id
    assert seen.payloads("on_process_floor_requested") == [granted]
    floor = await rec.wait_for("on_granted_floor_request")
    assert floor["moderatorId"] == teacher.client_id
    published = await rec.wait_for("on_published_stream", within=20)
    assert rec.time_of("on_granted_floor_request") < rec.time_of("on_published_stream")
    added = await seen.wait_for("on_stream_added")
    assert added["id"] == published["streamId"]
    await eventually(lambda: packets(room_server, room_id, student.client_id, "video") > 10, what="video")
    await eventually(lambda: packets(room_server, room_id, student.client_id, "audio") > 10, what="audio")

    released = await teacher.release_floor(student.client_id)
    assert released["result"] == 0
    await rec.wait_for("on_released_floor_request")
    assert (await rec.wait_for("on_unpublished_stream"))["streamId"] == published["streamId"]
    await seen.wait_for("on_stream_removed", lambda s: s["id"] == published["streamId"])
    await eventually(lambda: own_stream(room_server, room_id, student.client_id) is None, what="stream gone")
    await asyncio.sleep(1.0)
    assert student.phase == "connected" and "on_connection_lost" not in rec.names()
    assert student.client_id in [p["clientId"] for p in room_server.room_view(room_id)["participants"]]
    await student.disconnect()
    await teacher.disconnect()


async def test_a_denied_participant_stays_a_listener(room_server: RoomServer) -> None:
    room_id = lecture_room(room_server)
    teacher, seen = await join(room_server, room_id, "teacher", "moderator", NO_MEDIA)
    student, rec = await join(room_server, room_id, "student", "participant", AV)
    await student.request_floor()
    await seen.wait_for("on_floor_request_received")
    assert (await teacher.deny_floor(student.client_id))["result"] == 0
    await rec.wait_for("on_denied_floor_request")
    await asyncio.sleep(1.0)
    assert own_stream(room_server, room_id, student.client_id) is None
    assert "on_published_stream" not in rec.names()
    again = await student.request_floor()  # denied: it may ask again
    assert again["result"] == 0
    await student.disconnect()
    await teacher.disconnect()


async def test_moderators_publish_freely_in_a_lecture(room_server: RoomServer) -> None:
    room_id = lecture_room(room_server)
    teacher, rec = await join(room_server, room_id, "teacher", "moderator", AV)
    await rec.wait_for("on_published_stream", within=20)
    await teacher.disconnect()


GARBAGE: list[Any] = [
    None,
    7,
    "x",
    [],
    {},
    {"clientId": 1},
    {"clientId": ""},
    {"clientId": "y" * 100_000},
    {"clientId": 2, "padding": "p" * 500_000},  # a huge message: refused like a small one
    {"clientId": [{"deep": [[[[[]]]]]}]},
]


async def test_floor_requests_are_checked(room_server: RoomServer, raw_client: Any, peer: Any) -> None:
    room_id = lecture_room(room_server)
    mod = await raw_client()
    _, mod_connected = await mod.join(room_server.mint_token(room_id, name="mod", role="moderator"))
    for key in ("raisedHands", "approvedHands", "floorInvites"):
        assert mod_connected[key] == [], key  # the official client needs them in lecture mode
    assert mod_connected["room"]["settings"]["mode"] == "lecture"
    student = await raw_client()
    ack, _ = await student.join(room_server.mint_token(room_id, name="student"))
    student_id = ack["clientId"]

    no_floor = await student.ack("publish", {"audio": True, "video": True}, None)
    assert no_floor["result"] == ErrorCode.NOT_PERMITTED
    assert (await mod.ack("requestFloor"))["result"] == ErrorCode.NOT_PERMITTED  # moderators don't ask
    assert (await student.ack("grantFloor", {"clientId": student_id}))["result"] == ErrorCode.NOT_PERMITTED
    assert (await mod.ack("grantFloor", {"clientId": student_id}))["result"] == ErrorCode.INVALID_PARAMETERS
    assert (await mod.ack("releaseFloor", {"clientId": student_id}))["result"] == ErrorCode.INVALID_PARAMETERS
    for name in ("grantFloor", "denyFloor", "releaseFloor"):
        for payload in GARBAGE:
            assert (await mod.ack(name, payload))["result"] == ErrorCode.MALFORMED_REQUEST, (name, payload)
    for payload in ([1, 2], "floor", 3):
        assert (await student.ack("requestFloor", payload))["result"] == ErrorCode.MALFORMED_REQUEST

    assert (await student.ack("requestFloor"))["result"] == 0
    assert (await student.ack("requestFloor", {}))["result"] == ErrorCode.ALREADY_IN_STATE
    assert (await mod.next("floor-requested"))["clientId"] == student_id
    late_mod = await raw_client()
    _, late = await late_mod.join(room_server.mint_token(room_id, name="late-mod", role="moderator"))
    assert late["raisedHands"] == [{"clientId": student_id, "name": "student"}]
    assert (await mod.ack("grantFloor", {"clientId": student_id}))["result"] == 0
    assert (await student.next("floor-granted"))["moderatorId"] == mod.client_id
    stream_id = await student.publish(peer())
    assert stream_id > 0
    third = await raw_client()
    _, view = await third.join(room_server.mint_token(room_id, name="third", role="moderator"))
    assert (
        view["approvedHands"] == [{"clientId": student_id, "name": "student"}] and view["raisedHands"] == []
    )

    # a group room has no floor
    group = await raw_client()
    group_room = str(room_server.create_room(name="group")["room_id"])
    await group.join(room_server.mint_token(group_room, name="g"))
    assert (await group.ack("requestFloor"))["result"] == ErrorCode.NOT_PERMITTED
    assert room_server.room_view(room_id)["result"] == 0  # the server is unharmed
