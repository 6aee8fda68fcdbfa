"""The waiting room (settings ``knock`` / ``wait_for_moderator``), with real EnxRtc clients and
raw Socket.IO clients on the real room server: approval, denial, the client's wait timeout,
a moderator's arrival, and bad input from everyone."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from rtc_faults import NO_MEDIA, Recorder, eventually, joined

from bot.proto import ErrorCode
from bot.rtc import EnxRtc, RoomError
from bot.server import RoomServer

pytestmark = pytest.mark.timeout(60)


def knock_room(server: RoomServer, **settings: Any) -> str:
    return str(server.create_room(name="knock", settings={"knock": True, **settings})["room_id"])


def waiting(server: RoomServer, room_id: str) -> list[str]:
    return [u["name"] for u in server.room_view(room_id)["awaited"]]


def names_in(server: RoomServer, room_id: str) -> list[str]:
    return [p["name"] for p in server.room_view(room_id)["participants"]]


def start_join(
    server: RoomServer, room_id: str, name: str, room_info: dict[str, Any] | None = None
) -> tuple[EnxRtc, Recorder, asyncio.Task[None]]:
    rtc = EnxRtc(label=name)
    rec = Recorder(rtc)
    token = server.mint_token(room_id, name=name, role="participant")
    task = asyncio.create_task(rtc.join_room(token, NO_MEDIA, room_info))
    return rtc, rec, task


async def test_knock_waits_until_a_moderator_approves(room_server: RoomServer) -> None:
    room_id = knock_room(room_server)
    mod = EnxRtc(label="mod")
    mod_rec = Recorder(mod)
    await mod.join_room(room_server.mint_token(room_id, name="mod", role="moderator"), NO_MEDIA)
    rtc, rec, join = start_join(room_server, room_id, "knocker")

    awaited = await rec.wait_for("on_room_awaited")
    assert awaited == {"event_type": "knock"}
    user = await mod_rec.wait_for("on_user_awaited")
    assert user["name"] == "knocker" and user["role"] == "participant"
    assert not join.done()
    assert waiting(room_server, room_id) == ["knocker"]
    assert names_in(room_server, room_id) == ["mod"]  # nobody sees a waiter in the room
    assert "on_user_connected" not in mod_rec.names()

    ack = await mod.approve_awaited_user(user["clientId"])
    assert ack["result"] == 0 and ack["clientId"] == user["clientId"]
    assert mod_rec.payloads("on_ack_for_approve_awaited_user") == [ack]
    await asyncio.wait_for(join, 10)
    assert rtc.client_id == user["clientId"]
    assert rec.names().index("on_room_awaited") < rec.names().index("on_room_connected")
    await mod_rec.wait_for("on_user_connected", lambda u: u["clientId"] == user["clientId"])
    assert waiting(room_server, room_id) == []
    assert sorted(names_in(room_server, room_id)) == ["knocker", "mod"]
    await rtc.disconnect()
    await mod.disconnect()


async def test_denied_join_ends_with_4130(room_server: RoomServer) -> None:
    room_id = knock_room(room_server)
    mod = EnxRtc(label="mod")
    mod_rec = Recorder(mod)
    await mod.join_room(room_server.mint_token(room_id, name="mod", role="moderator"), NO_MEDIA)
    rtc, rec, join = start_join(room_server, room_id, "unwanted")
    user = await mod_rec.wait_for("on_user_awaited")
    ack = await mod.deny_awaited_user(user["clientId"])
    assert ack["result"] == 0
    with pytest.raises(RoomError) as refused:
        await asyncio.wait_for(join, 10)
    assert refused.value.code == ErrorCode.AWAIT_DENIED
    assert rec.payloads("on_room_error")[0]["result"] == ErrorCode.AWAIT_DENIED
    assert "on_room_connected" not in rec.names()
    assert (await rtc.wait_disconnected())["cause"] == ErrorCode.AWAIT_DENIED
    assert waiting(room_server, room_id) == []
    assert names_in(room_server, room_id) == ["mod"]
    again = await mod.deny_awaited_user(user["clientId"])  # nobody waits any more
    assert again["result"] == ErrorCode.INVALID_PARAMETERS
    await mod.disconnect()


async def test_wait_times_out_with_4131_and_the_server_forgets_the_waiter(room_server: RoomServer) -> None:
    room_id = knock_room(room_server)
    _rtc, rec, join = start_join(room_server, room_id, "patient", {"wait_timeout_s": 1.5})
    await rec.wait_for("on_room_awaited")
    started = time.monotonic()
    with pytest.raises(RoomError) as gave_up:
        await asyncio.wait_for(join, 15)
    waited = time.monotonic() - started
    assert gave_up.value.code == ErrorCode.AWAIT_TIMED_OUT
    assert 1.0 < waited < 8.0, waited
    await eventually(lambda: waiting(room_server, room_id) == [], what="the waiter forgotten")


async def test_wait_for_moderator_lets_everyone_in_when_a_moderator_arrives(room_server: RoomServer) -> None:
    room_id = str(room_server.create_room(name="wfm", settings={"wait_for_moderator": True})["room_id"])
    first, rec1, join1 = start_join(room_server, room_id, "early-1")
    second, rec2, join2 = start_join(room_server, room_id, "early-2")
    assert (await rec1.wait_for("on_room_awaited"))["event_type"] == "wait_for_moderator"
    await rec2.wait_for("on_room_awaited")
    await eventually(lambda: len(waiting(room_server, room_id)) == 2, what="two waiting")
    mod = EnxRtc(label="mod")
    await mod.join_room(room_server.mint_token(room_id, name="mod", role="moderator"), NO_MEDIA)
    await asyncio.wait_for(asyncio.gather(join1, join2), 10)
    assert sorted(names_in(room_server, room_id)) == ["early-1", "early-2", "mod"]
    late, _ = await joined(room_server, room_id, "late", NO_MEDIA)  # a moderator is in: no wait
    for rtc in (first, second, late, mod):
        await rtc.disconnect()


async def test_a_moderator_joining_later_hears_who_knocks(room_server: RoomServer, raw_client: Any) -> None:
    room_id = knock_room(room_server)
    rtc, rec, join = start_join(room_server, room_id, "knocker")
    await rec.wait_for("on_room_awaited")
    mod = await raw_client()
    _, connected = await mod.join(room_server.mint_token(room_id, name="mod", role="moderator"))
    assert [u["name"] for u in connected["awaitedParticipants"]] == ["knocker"]
    awaited = await mod.next("user-awaited")
    assert awaited["name"] == "knocker"
    participant = await raw_client()
    _, seen = await participant.join(room_server.mint_token(room_id, name="other", role="moderator"))
    assert (
        seen["awaitedParticipants"] == [awaited]
        or seen["awaitedParticipants"][0]["clientId"] == awaited["clientId"]
    )
    ack = await mod.ack("approveAwaitedUser", {"clientId": awaited["clientId"]})
    assert ack["result"] == 0
    await asyncio.wait_for(join, 10)
    await rtc.disconnect()


GARBAGE: list[Any] = [
    None,
    123,
    "clientId",
    [],
    {},
    {"clientId": 5},
    {"clientId": ""},
    {"clientId": True},
    {"clientId": "x" * 100_000},
    {"clientId": {"$gt": ""}},
    {"clientId": None, "padding": "p" * 500_000},
]


@pytest.mark.parametrize("request_name", ["approveAwaitedUser", "denyAwaitedUser"])
async def test_bad_input_gets_an_error_ack_and_changes_nothing(
    room_server: RoomServer, raw_client: Any, request_name: str
) -> None:
    room_id = knock_room(room_server)
    rtc, rec, join = start_join(room_server, room_id, "knocker")
    await rec.wait_for("on_room_awaited")
    waiter_id = room_server.room_view(room_id)["awaited"][0]["clientId"]
    mod = await raw_client()
    await mod.join(room_server.mint_token(room_id, name="mod", role="moderator"))
    for payload in GARBAGE:
        ack = await mod.ack(request_name, payload)
        assert ack["result"] == ErrorCode.MALFORMED_REQUEST, (payload, ack)
    unknown = await mod.ack(request_name, {"clientId": "no-such-client"})
    assert unknown["result"] == ErrorCode.INVALID_PARAMETERS

    # a moderator elsewhere cannot decide for this room, a socket that never joined neither
    elsewhere = await raw_client()
    other_room = str(room_server.create_room(name="plain")["room_id"])
    await elsewhere.join(room_server.mint_token(other_room, name="other-mod", role="moderator"))
    refused = await elsewhere.ack(request_name, {"clientId": waiter_id})
    assert refused["result"] == ErrorCode.INVALID_PARAMETERS  # nobody waits in *its* room
    stranger = await raw_client()
    assert (await stranger.ack(request_name, {"clientId": waiter_id}))["result"] == ErrorCode.NOT_JOINED

    assert waiting(room_server, room_id) == ["knocker"]  # nothing changed
    assert not join.done()
    await rtc.disconnect()
    with pytest.raises((RoomError, asyncio.CancelledError)):
        await asyncio.wait_for(join, 10)
    await eventually(lambda: waiting(room_server, room_id) == [], what="a waiter that left is forgotten")


async def test_participants_may_not_approve_and_waiters_may_not_act(
    room_server: RoomServer, raw_client: Any
) -> None:
    room_id = str(room_server.create_room(name="knock", settings={"knock": True})["room_id"])
    waiter = await raw_client()
    ack = await waiter.ack("token", _payload(room_server.mint_token(room_id, name="waiter")))
    assert ack["result"] == 0
    assert (await waiter.next("room-awaited")) == {"event_type": "knock"}
    for event, payload in (("publish", {"audio": True, "video": False}), ("requestFloor", {})):
        refused = await waiter.ack(event, payload, None) if event == "publish" else await waiter.ack(event)
        assert refused["result"] == ErrorCode.NOT_JOINED, (event, refused)
    again = await waiter.ack("token", _payload(room_server.mint_token(room_id, name="waiter-2")))
    assert again["result"] == ErrorCode.ALREADY_JOINED
    await waiter.settle(0.3)
    assert "room-connected" not in waiter.names()

    # a participant let in (by a moderator) cannot approve anyone
    mod = await raw_client()
    await mod.join(room_server.mint_token(room_id, name="mod", role="moderator"))
    assert (await mod.ack("approveAwaitedUser", {"clientId": ack["clientId"]}))["result"] == 0
    await waiter.next("room-allowed")
    await waiter.next("room-connected")
    late = await raw_client()
    late_ack = await late.ack("token", _payload(room_server.mint_token(room_id, name="late")))
    await late.next("room-awaited")
    refused = await waiter.ack("approveAwaitedUser", {"clientId": late_ack["clientId"]})
    assert refused["result"] == ErrorCode.NOT_PERMITTED
    assert waiting(room_server, room_id) == ["late"]
    assert sorted(names_in(room_server, room_id)) == ["mod", "waiter"]


def _payload(token: str) -> dict[str, Any]:
    from conftest import token_payload

    return token_payload(token)


def test_room_settings_knock_and_wait_for_moderator_are_checked(room_server: RoomServer) -> None:
    from bot.server import BadRequest

    for bad in ({"knock": "yes"}, {"wait_for_moderator": 1}, {"knock": None}):
        with pytest.raises(BadRequest):
            room_server.create_room(name="bad", settings=bad)
    room = room_server.create_room(name="ok", settings={"knock": True, "wait_for_moderator": False})
    assert room["settings"]["knock"] is True


async def test_the_emulator_api_approves_denies_and_ends_a_room(room_server: RoomServer) -> None:
    import aiohttp
    from rtc_faults import basic_auth

    room_id = knock_room(room_server)
    first, rec1, join1 = start_join(room_server, room_id, "first")
    _second, rec2, join2 = start_join(room_server, room_id, "second")
    await rec1.wait_for("on_room_awaited")
    await rec2.wait_for("on_room_awaited")
    ids = {u["name"]: u["clientId"] for u in room_server.room_view(room_id)["awaited"]}
    base = f"{room_server.url}/emulator/rooms/{room_id}"
    async with aiohttp.ClientSession(headers=basic_auth(room_server)) as http:
        for path, body, status in (
            (f"/awaited/{ids['first']}", {"action": "maybe"}, 400),
            (f"/awaited/{ids['first']}", [], 400),
            ("/awaited/nobody", {"action": "approve"}, 404),
        ):
            async with http.post(base + path, json=body) as answer:
                assert answer.status == status, (path, body, await answer.text())
        async with http.post(f"{base}/awaited/{ids['first']}", json={"action": "approve"}) as answer:
            assert answer.status == 200 and (await answer.json())["result"] == 0
        await asyncio.wait_for(join1, 10)
        async with http.post(f"{base}/awaited/{ids['second']}", json={"action": "deny"}) as answer:
            assert answer.status == 200
        with pytest.raises(RoomError) as denied:
            await asyncio.wait_for(join2, 10)
        assert denied.value.code == ErrorCode.AWAIT_DENIED
        async with http.post(f"{base}/end", json={}) as answer:
            assert answer.status == 200
    ended = await first.wait_disconnected()
    assert ended == {"cause": ErrorCode.CONFERENCE_EXPIRED, "msg": "conference-expired"}
    assert rec1.payloads("on_room_disconnected") == [ended]
    assert "on_reconnect" not in rec1.names()
    assert names_in(room_server, room_id) == []


async def test_deleting_a_room_closes_its_waiters(room_server: RoomServer) -> None:
    room_id = knock_room(room_server)
    _rtc, rec, join = start_join(room_server, room_id, "waiter")
    await rec.wait_for("on_room_awaited")
    await room_server.delete_room(room_id)
    with pytest.raises(RoomError) as failed:
        await asyncio.wait_for(join, 10)
    assert failed.value.code == ErrorCode.SIGNALLING_CONNECTION_FAILED
