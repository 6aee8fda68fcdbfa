"""Moderator requests as the room server answers them, driven by bare Socket.IO clients on
loopback: drop of others (and the official client's own leave still working), hard mutes
room-wide and per user, recording notices, the REST drop, and bad input for every new message
(an error ack, nothing changed, the server still serving)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from conftest import APP_ID, APP_KEY, RawClient

from bot.proto import ErrorCode
from bot.server import RoomServer

Connect = Callable[[], Awaitable[RawClient]]

pytestmark = pytest.mark.timeout(60)

MODERATOR_REQUESTS: list[tuple[str, tuple[Any, ...]]] = [
    ("hardMute", ()),
    ("hardUnmute", ()),
    ("startRecord", ()),
    ("stopRecord", ()),
    ("hardmute-user-audio", ({"clientId": "x"},)),
    ("hardunmute-user-audio", ({"clientId": "x"},)),
    ("hardmute-user-video", ({"clientId": "x"},)),
    ("hardunmute-user-video", ({"clientId": "x"},)),
    ("drop", ({"all": False, "clientIds": ["x"]},)),
]


async def _joined(
    server: RoomServer, room: dict[str, Any], connect: Connect, name: str, role: str
) -> RawClient:
    client = await connect()
    await client.join(server.mint_token(room["room_id"], name=name, role=role))
    return client


def _ids(server: RoomServer, room_id: str) -> set[str]:
    return {p["clientId"] for p in server.room_view(room_id)["participants"]}


def _muted(server: RoomServer, room_id: str, client_id: str, kind: str) -> bool:
    room = server.rooms.get(room_id)
    return bool(getattr(room.participants[client_id], f"{kind}_muted"))


async def test_moderator_drops_a_participant_who_hears_why_and_others_see_it_leave(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    mod = await _joined(room_server, room, raw_client, "mod", "moderator")
    bob = await _joined(room_server, room, raw_client, "bob", "participant")
    carol = await _joined(room_server, room, raw_client, "carol", "participant")
    ack = await mod.ack("drop", {"all": False, "clientIds": [bob.client_id, "nobody"]})
    assert ack["result"] == 0 and ack["clientIds"] == [bob.client_id] and ack["notFound"] == ["nobody"]
    told = await bob.next("room-disconnected")
    assert told["cause"] == {"cause": ErrorCode.DISCONNECTED_BY_MODERATOR, "msg": "disconnected-by-moderator"}
    assert told["moderator"] == mod.client_id
    gone = await carol.next("user-disconnected")
    assert gone["clientId"] == bob.client_id
    await mod.next("user-disconnected", lambda p: p["clientId"] == bob.client_id)
    async with asyncio.timeout(5):
        await bob.disconnected.wait()  # the server closes its socket if it does not
    assert _ids(room_server, room["room_id"]) == {mod.client_id, carol.client_id}
    # nobody is left "away" for a rejoin: the dropped participant is gone at once
    assert all(p["connected"] for p in room_server.room_view(room["room_id"])["participants"])


async def test_drop_all_leaves_the_moderator_alone(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    mod = await _joined(room_server, room, raw_client, "mod", "moderator")
    others = [await _joined(room_server, room, raw_client, f"p{i}", "participant") for i in range(2)]
    ack = await mod.ack("drop", {"all": True})
    assert ack["result"] == 0 and sorted(ack["clientIds"]) == sorted(o.client_id for o in others)
    for other in others:
        await other.next("room-disconnected")
    assert _ids(room_server, room["room_id"]) == {mod.client_id}


async def test_the_official_clients_own_leave_is_still_a_leave(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    mod = await _joined(room_server, room, raw_client, "mod", "moderator")
    bob = await _joined(room_server, room, raw_client, "bob", "participant")
    assert await bob.ack("drop", {"self": True}) == {"result": 0}  # trace: drop {self: true}
    await mod.next("user-disconnected", lambda p: p["clientId"] == bob.client_id)
    assert "room-disconnected" not in bob.names()
    # a moderator's own {self: true} is its leave too, not a drop of others
    carol = await _joined(room_server, room, raw_client, "carol", "participant")
    assert await mod.ack("drop", {"self": True}) == {"result": 0}
    await carol.next("user-disconnected", lambda p: p["clientId"] == mod.client_id)
    assert _ids(room_server, room["room_id"]) == {carol.client_id}


@pytest.mark.parametrize(("name", "args"), MODERATOR_REQUESTS)
async def test_a_participant_calling_a_moderator_request_is_refused_and_nothing_changes(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect, name: str, args: tuple[Any, ...]
) -> None:
    mod = await _joined(room_server, room, raw_client, "mod", "moderator")
    bob = await _joined(room_server, room, raw_client, "bob", "participant")
    carol = await _joined(room_server, room, raw_client, "carol", "participant")
    args = tuple({**a, "clientId": carol.client_id} if "clientId" in a else a for a in args)
    if name == "drop":
        args = ({"all": False, "clientIds": [carol.client_id, mod.client_id]},)
    expected = {
        "hardMute": ErrorCode.HARD_MUTE_NOT_PERMITTED,
        "hardUnmute": ErrorCode.HARD_UNMUTE_NOT_PERMITTED,
        "startRecord": ErrorCode.RECORD_NOT_PERMITTED,
        "stopRecord": ErrorCode.RECORD_NOT_PERMITTED,
        "drop": ErrorCode.DROP_NOT_PERMITTED,
    }.get(name, ErrorCode.NOT_PERMITTED)
    ack = await bob.ack(name, *args)
    assert ack["result"] == expected and ack["msg"], ack
    await bob.settle()
    assert _ids(room_server, room["room_id"]) == {mod.client_id, bob.client_id, carol.client_id}
    assert not _muted(room_server, room["room_id"], carol.client_id, "audio")
    assert not _muted(room_server, room["room_id"], carol.client_id, "video")
    moderation_events = {
        "room-muted",
        "room-unmuted",
        "room-record-on",
        "room-record-off",
        "room-disconnected",
        *(n for n, _ in MODERATOR_REQUESTS),
    }
    for client in (mod, carol):
        assert not moderation_events & set(client.names()), client.names()


GARBAGE: list[tuple[str, tuple[Any, ...]]] = [
    ("drop", ({"all": False, "clientIds": "abc"},)),
    ("drop", ({"all": False, "clientIds": [1, 2]},)),
    ("drop", ({"all": "yes", "clientIds": ["a"]},)),
    ("drop", ({"all": False, "clientIds": []},)),
    ("drop", ({"all": False, "clientIds": ["x" * 10_000]},)),
    ("drop", ({"all": False, "clientIds": [f"c{i}" for i in range(5000)]},)),
    ("drop", ("drop",)),
    ("drop", ([1, 2, 3],)),
    ("hardMute", ("loud",)),
    ("hardUnmute", (42,)),
    ("startRecord", ([],)),
    ("stopRecord", ("x" * 100_000,)),
    ("hardmute-user-audio", ()),
    ("hardmute-user-audio", ({},)),
    ("hardmute-user-audio", ({"clientId": 7},)),
    ("hardunmute-user-audio", ({"clientId": ""},)),
    ("hardmute-user-video", ({"clientId": "y" * 100_000},)),
    ("hardunmute-user-video", ("not an object",)),
]


@pytest.mark.parametrize(("name", "args"), GARBAGE)
async def test_garbage_from_a_moderator_gets_an_error_ack_and_changes_nothing(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect, name: str, args: tuple[Any, ...]
) -> None:
    mod = await _joined(room_server, room, raw_client, "mod", "moderator")
    bob = await _joined(room_server, room, raw_client, "bob", "participant")
    ack = await mod.ack(name, *args)
    assert ack["result"] in (ErrorCode.MALFORMED_REQUEST, ErrorCode.INVALID_PARAMETERS), ack
    assert len(ack["msg"]) < 1000  # a huge field is named, not echoed
    await mod.settle()
    assert _ids(room_server, room["room_id"]) == {mod.client_id, bob.client_id}
    assert not _muted(room_server, room["room_id"], bob.client_id, "audio")
    assert "room-disconnected" not in bob.names() and "room-muted" not in bob.names()
    assert room_server.failures.counts == {}  # refused on purpose, never a handler crash
    # the server still serves: a valid moderator request works on the same socket
    assert (await mod.ack("hardmute-user-audio", {"clientId": bob.client_id}))["result"] == 0


async def test_moderator_requests_on_targets_that_are_not_there_or_in_that_state_are_refused(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    mod = await _joined(room_server, room, raw_client, "mod", "moderator")
    bob = await _joined(room_server, room, raw_client, "bob", "participant")
    no_one = {"all": False, "clientIds": ["nobody", mod.client_id]}
    assert (await mod.ack("drop", no_one))["result"] == ErrorCode.INVALID_PARAMETERS
    for target in ("nobody", mod.client_id):
        assert (await mod.ack("hardmute-user-audio", {"clientId": target}))[
            "result"
        ] == ErrorCode.INVALID_PARAMETERS
    assert (await mod.ack("hardunmute-user-video", {"clientId": bob.client_id}))["result"] == (
        ErrorCode.ALREADY_IN_STATE
    )
    assert (await mod.ack("hardUnmute"))["result"] == ErrorCode.ROOM_NOT_HARD_MUTED
    assert (await mod.ack("hardMute"))["result"] == 0
    assert (await mod.ack("hardMute"))["result"] == ErrorCode.ROOM_ALREADY_HARD_MUTED
    assert (await mod.ack("stopRecord"))["result"] == ErrorCode.ALREADY_IN_STATE
    assert (await mod.ack("startRecord"))["result"] == 0
    assert (await mod.ack("startRecord"))["result"] == ErrorCode.RECORDING_ALREADY_ON
    assert _ids(room_server, room["room_id"]) == {mod.client_id, bob.client_id}


async def test_room_hard_mute_relays_the_mute_and_refuses_self_unmute_until_released(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    mod = await _joined(room_server, room, raw_client, "mod", "moderator")
    bob = await _joined(room_server, room, raw_client, "bob", "participant")
    carol = await _joined(room_server, room, raw_client, "carol", "participant")
    ack = await mod.ack("hardMute")
    assert ack == {"result": 0, "msg": "Room is muted"}
    notice = await bob.next("room-muted")
    assert notice["moderator"] == mod.client_id and notice["status"] is True
    relay = await carol.next("user-audio-muted", lambda p: p["clientId"] == bob.client_id)
    assert relay["user"]["audioMuted"] is True
    assert "room-muted" not in mod.names()  # the moderator has its ack
    assert _muted(room_server, room["room_id"], bob.client_id, "audio")
    assert not _muted(room_server, room["room_id"], mod.client_id, "audio")  # moderators are exempt
    refused = await bob.ack("user-audio-unmuted")
    assert refused["result"] == ErrorCode.NOT_PERMITTED and "hard-muted" in refused["msg"]
    assert _muted(room_server, room["room_id"], bob.client_id, "audio")
    assert (await bob.ack("user-video-muted"))["result"] == 0  # other kinds are its own
    # a newcomer to a hard-muted room is muted from the start and told after room-connected
    dave = await raw_client()
    _, connected = await dave.join(room_server.mint_token(room["room_id"], name="dave"))
    assert connected["user"]["audioMuted"] is True
    await dave.next("room-muted")

    assert (await mod.ack("hardUnmute"))["result"] == 0
    await bob.next("room-unmuted")
    assert (await bob.ack("user-audio-unmuted"))["result"] == 0
    await carol.next("user-audio-unmuted", lambda p: p["clientId"] == bob.client_id)


async def test_per_user_hard_mute_targets_one_kind_of_one_participant(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    mod = await _joined(room_server, room, raw_client, "mod", "moderator")
    bob = await _joined(room_server, room, raw_client, "bob", "participant")
    carol = await _joined(room_server, room, raw_client, "carol", "participant")
    ack = await mod.ack("hardmute-user-video", {"clientId": bob.client_id})
    assert ack["result"] == 0 and ack["clientId"] == bob.client_id
    notice = await bob.next("hardmute-user-video")
    assert notice["clientId"] == bob.client_id and notice["moderator"] == mod.client_id
    await carol.next("user-video-muted", lambda p: p["clientId"] == bob.client_id)
    assert "hardmute-user-video" not in carol.names()
    assert (await bob.ack("user-video-unmuted"))["result"] == ErrorCode.NOT_PERMITTED
    assert (await bob.ack("user-audio-muted"))["result"] == 0  # audio is still its own
    assert (await bob.ack("user-audio-unmuted"))["result"] == 0
    assert (await mod.ack("hardunmute-user-video", {"clientId": bob.client_id}))["result"] == 0
    await bob.next("hardunmute-user-video")
    assert (await bob.ack("user-video-unmuted"))["result"] == 0


async def test_recording_notices_reach_everyone_and_newcomers(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    mod = await _joined(room_server, room, raw_client, "mod", "moderator")
    bob = await _joined(room_server, room, raw_client, "bob", "participant")
    assert (await mod.ack("startRecord"))["result"] == 0
    assert (await bob.next("room-record-on"))["moderatorId"] == mod.client_id
    late = await _joined(room_server, room, raw_client, "late", "participant")
    await late.next("room-record-on")
    assert (await mod.ack("stopRecord"))["result"] == 0
    for client in (bob, late):
        await client.next("room-record-off")
    assert "room-record-on" not in mod.names()


def _auth(user: str = APP_ID, key: str = APP_KEY) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()}


async def test_rest_drop_of_a_participant(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    mod = await _joined(room_server, room, raw_client, "mod", "moderator")
    bob = await _joined(room_server, room, raw_client, "bob", "participant")
    base = f"{room_server.api_url}/rooms/{room['room_id']}/participants"
    async with aiohttp.ClientSession() as http:
        async with http.delete(f"{base}/{bob.client_id}") as r:
            assert r.status == 401 and (await r.json())["result"] == 401
        async with http.delete(f"{base}/{bob.client_id}", headers=_auth(key="wrong")) as r:
            assert r.status == 401
        async with http.delete(f"{base}/nobody", headers=_auth()) as r:
            assert r.status == 404 and "nobody" in (await r.json())["error"]
        async with http.delete(f"{room_server.api_url}/rooms/no-room/participants/x", headers=_auth()) as r:
            assert r.status == 404
        async with http.delete(f"{base}/{bob.client_id}", headers=_auth()) as r:
            assert r.status == 200 and await r.json() == {"result": 0}
    told = await bob.next("room-disconnected")
    assert told["cause"]["cause"] == ErrorCode.DISCONNECTED_BY_MODERATOR and "moderator" not in told
    await mod.next("user-disconnected", lambda p: p["clientId"] == bob.client_id)
    assert _ids(room_server, room["room_id"]) == {mod.client_id}


async def test_emulator_hard_mute_and_recording_act_as_a_moderator(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    bob = await _joined(room_server, room, raw_client, "bob", "participant")
    carol = await _joined(room_server, room, raw_client, "carol", "participant")
    base = f"{room_server.url}/emulator/rooms/{room['room_id']}"
    async with aiohttp.ClientSession(headers=_auth()) as http:
        for path, body in (
            ("hard-mute", {"muted": "yes"}),
            ("hard-mute", {"muted": True, "kind": "video"}),
            ("hard-mute", {"muted": True, "client_id": 5}),
            ("hard-mute", {"muted": True, "client_id": "x" * 1000}),
            ("hard-mute", {"muted": True, "client_id": bob.client_id, "kind": "screen"}),
            ("recording", {"on": 1}),
            ("recording", {}),
        ):
            async with http.post(f"{base}/{path}", json=body) as r:
                assert r.status == 400, (path, body, await r.text())
                assert len((await r.json())["error"]) < 300
        async with http.post(f"{base}/hard-mute", data=b"not json") as r:
            assert r.status == 400
        async with http.post(f"{room_server.url}/emulator/rooms/nope/recording", json={"on": True}) as r:
            assert r.status == 404
        async with http.post(f"{base}/hard-mute", json={"muted": True, "client_id": "nobody"}) as r:
            assert r.status == 400
        assert "room-muted" not in bob.names() and not _muted(
            room_server, room["room_id"], bob.client_id, "audio"
        )

        async with http.post(f"{base}/hard-mute", json={"muted": True}) as r:
            assert r.status == 200 and (await r.json())["result"] == 0
        async with http.post(f"{base}/hard-mute", json={"muted": True}) as r:
            assert r.status == 400 and "already" in (await r.json())["error"]
        for client in (bob, carol):
            assert (await client.next("room-muted"))["moderator"] == ""
        assert (await bob.ack("user-audio-unmuted"))["result"] == ErrorCode.NOT_PERMITTED
        async with http.post(f"{base}/hard-mute", json={"muted": False}) as r:
            assert r.status == 200
        await bob.next("room-unmuted")
        body = {"muted": True, "client_id": carol.client_id, "kind": "video"}
        async with http.post(f"{base}/hard-mute", json=body) as r:
            assert r.status == 200 and (await r.json())["clientId"] == carol.client_id
        await carol.next("hardmute-user-video")
        await bob.next("user-video-muted", lambda p: p["clientId"] == carol.client_id)
        async with http.post(f"{base}/recording", json={"on": True}) as r:
            assert r.status == 200
        for client in (bob, carol):
            await client.next("room-record-on")
        async with http.post(f"{base}/recording", json={"on": False}) as r:
            assert r.status == 200
        await bob.next("room-record-off")
    assert room_server.failures.counts == {}
