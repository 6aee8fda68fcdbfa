"""REST API of the room server and the token handshake's refusals, over real sockets."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import structlog.testing
from conftest import APP_ID, APP_KEY, RawClient, token_payload

from bot.proto import ErrorCode, decode_token, mint_token
from bot.server import RoomServer, serve


def basic(user: str, password: str) -> dict[str, str]:
    """An Authorization header (aiohttp 3.14 deprecates its ``auth=`` argument)."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


AUTH = basic(APP_ID, APP_KEY)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    body: dict[str, Any] = await response.json(content_type=None)
    return body


async def test_rooms_create_list_get_delete(room_server: RoomServer, http: aiohttp.ClientSession) -> None:
    api = room_server.api_url
    async with http.post(
        f"{api}/rooms",
        json={"name": "standup", "owner_ref": "me", "settings": {"quality": "HD", "mode": "group"}},
        headers=AUTH,
    ) as r:
        assert r.status == 200
        created = await _json(r)
    assert created["result"] == 0
    room = created["room"]
    assert room["name"] == "standup" and room["owner_ref"] == "me"
    assert room["settings"]["quality"] == "HD"
    assert room["settings"]["max_active_talkers"] == room_server.max_talkers  # default filled in
    assert isinstance(room["room_id"], str) and room["created"].endswith("Z")

    async with http.get(f"{api}/rooms", headers=AUTH) as r:
        listed = await _json(r)
    assert listed["result"] == 0
    assert [x["room_id"] for x in listed["rooms"]] == [room["room_id"]]

    async with http.get(f"{api}/rooms/{room['room_id']}", headers=AUTH) as r:
        assert r.status == 200
        assert (await _json(r))["room"] == room

    async with http.delete(f"{api}/rooms/{room['room_id']}", headers=AUTH) as r:
        assert (await _json(r)) == {"result": 0}
    async with http.get(f"{api}/rooms/{room['room_id']}", headers=AUTH) as r:
        assert r.status == 404


@pytest.mark.parametrize(
    "auth",
    [{}, basic(APP_ID, "wrong-key"), basic("other-app", APP_KEY)],
    ids=["none", "wrong-key", "wrong-id"],
)
async def test_requests_without_the_app_credentials_get_401(
    room_server: RoomServer,
    room: dict[str, Any],
    http: aiohttp.ClientSession,
    auth: dict[str, str],
) -> None:
    urls = [
        ("GET", f"{room_server.api_url}/rooms"),
        ("POST", f"{room_server.api_url}/rooms"),
        ("POST", f"{room_server.api_url}/rooms/{room['room_id']}/tokens"),
        ("GET", f"{room_server.url}/emulator/rooms/{room['room_id']}"),
    ]
    for method, url in urls:
        async with http.request(method, url, json={"name": "x"}, headers=auth) as r:
            assert r.status == 401, url
            assert r.headers["WWW-Authenticate"].startswith("Basic")
            body = await _json(r)
            assert body["result"] == 401 and body["error"]


async def test_garbage_authorization_header_is_401(
    room_server: RoomServer, http: aiohttp.ClientSession
) -> None:
    for header in ["Basic !!!notbase64", "Bearer abc", "Basic " + "dGVzdA=="]:  # no colon
        async with http.get(f"{room_server.api_url}/rooms", headers={"Authorization": header}) as r:
            assert r.status == 401


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        (b"{not json", "JSON"),
        (b"[1, 2]", "object"),
        (b"{}", "name"),
        (b'{"name": 42}', "name"),
        (b'{"name": "  "}', "name"),
        (b'{"name": "r", "settings": []}', "settings"),
        (b'{"name": "r", "settings": {"quality": "8K"}}', "quality"),
        (b'{"name": "r", "settings": {"moderators": true}}', "moderators"),
        (b'{"name": "r", "owner_ref": 7}', "owner_ref"),
        (b"\xff\xfe", "JSON"),
    ],
)
async def test_malformed_room_bodies_get_400_naming_the_problem(
    room_server: RoomServer, http: aiohttp.ClientSession, body: bytes, hint: str
) -> None:
    async with http.post(
        f"{room_server.api_url}/rooms",
        data=body,
        headers={**AUTH, "Content-Type": "application/json"},
    ) as r:
        assert r.status == 400
        reply = await _json(r)
    assert reply["result"] == 400 and hint in reply["error"]
    assert len(room_server.rooms) == 0


async def test_unknown_room_is_404_json(room_server: RoomServer, http: aiohttp.ClientSession) -> None:
    for method, url in [
        ("GET", f"{room_server.api_url}/rooms/nope"),
        ("POST", f"{room_server.api_url}/rooms/nope/tokens"),
        ("DELETE", f"{room_server.api_url}/rooms/nope"),
        ("GET", f"{room_server.url}/emulator/rooms/nope"),
        ("GET", f"{room_server.api_url}/no/such/route"),
    ]:
        async with http.request(method, url, json={"name": "a", "role": "participant"}, headers=AUTH) as r:
            assert r.status == 404, url
            assert (await _json(r))["result"] == 404


async def test_token_carries_the_host_the_request_came_in_on(
    room_server: RoomServer, room: dict[str, Any], http: aiohttp.ClientSession
) -> None:
    url = f"{room_server.api_url}/rooms/{room['room_id']}/tokens"
    body = {"name": "alice", "role": "moderator", "user_ref": "u-1", "data": {"team": "a"}}
    async with http.post(url, json=body, headers=AUTH) as r:
        reply = await _json(r)
    assert reply["result"] == 0
    envelope = decode_token(reply["token"])
    assert envelope.host == f"127.0.0.1:{room_server.port}"
    assert envelope.room_id == room["room_id"] and envelope.name == "alice"
    assert envelope.role == "moderator" and envelope.quality == "SD"
    assert envelope.claims is not None and envelope.claims["data"] == {"team": "a"}
    assert 14 * 60 < envelope.expires_at - time.time() <= 15 * 60  # type: ignore[operator]

    async with http.post(url, json=body, headers={**AUTH, "Host": "rooms.example:8443"}) as r:
        assert decode_token((await _json(r))["token"]).host == "rooms.example:8443"


@pytest.mark.parametrize(
    "body",
    [
        {"role": "participant"},
        {"name": "a", "role": "king"},
        {"name": "a"},
        {"name": "a", "role": "viewer", "user_ref": 3},
        {"name": "a", "role": "viewer", "data": "x"},
    ],
)
async def test_malformed_token_bodies_get_400(
    room_server: RoomServer, room: dict[str, Any], http: aiohttp.ClientSession, body: dict[str, Any]
) -> None:
    url = f"{room_server.api_url}/rooms/{room['room_id']}/tokens"
    async with http.post(url, json=body, headers=AUTH) as r:
        assert r.status == 400
        assert (await _json(r))["result"] == 400


# --------------------------------------------------------------------------- the handshake

Connect = Callable[[], Awaitable[RawClient]]


async def _refusal(client: RawClient, payload: Any) -> dict[str, Any]:
    ack = await client.ack("token", payload)
    assert set(ack) == {"result", "msg"}, ack
    # the server closes a refused socket shortly after the ack
    async with asyncio.timeout(3):
        await client.disconnected.wait()
    assert "room-connected" not in client.names()
    return dict(ack)


async def test_token_is_single_use(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    token = room_server.mint_token(room["room_id"], name="alice")
    first = await raw_client()
    await first.join(token)
    again = await _refusal(await raw_client(), token_payload(token))
    assert again["result"] == ErrorCode.TOKEN_ALREADY_USED


async def test_expired_token_is_4102(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    token = mint_token(
        app_key=APP_KEY,
        host=f"127.0.0.1:{room_server.port}",
        room_id=room["room_id"],
        name="late",
        role="participant",
        now=time.time() - 3600,
    )
    refused = await _refusal(await raw_client(), token_payload(token))
    assert refused["result"] == ErrorCode.TOKEN_EXPIRED


async def test_wrong_signature_and_garbage_are_4101(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    forged = mint_token(
        app_key="someone-elses-key-0123456789abcdef",
        host="x",
        room_id=room["room_id"],
        name="mallory",
        role="moderator",
        now=time.time(),
    )
    for payload in [
        token_payload(forged),
        {**token_payload(forged), "tokenId": "not.a.jwt"},
        {**token_payload(forged), "tokenId": 42},
        "just a string",
    ]:
        refused = await _refusal(await raw_client(), payload)
        assert refused["result"] == ErrorCode.TOKEN_INVALID, payload
    assert room_server.room_view(room["room_id"])["participants"] == []


async def test_wrong_room_and_unknown_room_are_refused(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    token = room_server.mint_token(room["room_id"], name="alice")
    wrong = await _refusal(await raw_client(), token_payload(token, room="another-room"))
    assert wrong["result"] == ErrorCode.TOKEN_WRONG_ROOM

    orphan = mint_token(
        app_key=APP_KEY, host="x", room_id="deleted-room", name="bob", role="participant", now=time.time()
    )
    gone = await _refusal(await raw_client(), token_payload(orphan))
    assert gone["result"] == ErrorCode.ROOM_NOT_FOUND
    # a refused token is not burnt: the right request still joins
    await (await raw_client()).join(token)


async def test_rejoin_with_the_same_token_is_accepted_only_for_its_client(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    """The official SDK rejoins with the token it joined with (reconnect trace line 36)."""
    token = room_server.mint_token(room["room_id"], name="alice")
    first = await raw_client()
    ack, _ = await first.join(token)
    old_id = ack["clientId"]
    await first.close()

    stranger = await _refusal(
        await raw_client(),
        token_payload(token, isReconnecting=True, reconnectAttempt=1, oldClientIdForReconnect="x"),
    )
    assert stranger["result"] == ErrorCode.REJOIN_REFUSED

    rejoin = await raw_client()
    ack, connected = await rejoin.join(
        token,
        isReconnecting=True,
        reconnectAttempt=1,
        oldClientIdForReconnect=old_id,
        room=room["room_id"],
        role="participant",
        name="alice",
    )
    assert ack["clientId"] != old_id
    assert [u["clientId"] for u in connected["userList"]] == [ack["clientId"]]


async def test_a_socket_that_never_sends_a_token_can_still_be_refused_cleanly(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    client = await raw_client()
    reply = await client.ack("publish", {"state": "media_engine", "audio": True, "video": True}, None)
    assert reply["result"] == ErrorCode.NOT_JOINED
    second = await client.ack("token", token_payload(room_server.mint_token(room["room_id"], "a")))
    assert second["result"] == 0
    again = await client.ack("token", token_payload(room_server.mint_token(room["room_id"], "b")))
    assert again["result"] == ErrorCode.ALREADY_JOINED


async def test_a_socket_that_sends_no_token_is_closed(room_server: RoomServer, raw_client: Connect) -> None:
    room_server.signalling.handshake_timeout_s = 0.2
    client = await raw_client()
    async with asyncio.timeout(3):
        await client.disconnected.wait()


async def test_deleting_a_room_disconnects_its_participants_and_closes_their_media(
    room_server: RoomServer,
    room: dict[str, Any],
    raw_client: Connect,
    peer: Callable[[], Any],
    http: aiohttp.ClientSession,
) -> None:
    alice = await raw_client()
    await alice.join(room_server.mint_token(room["room_id"], name="alice"))
    await alice.publish(peer())
    assert room_server.media.leg_count == 1
    async with http.delete(f"{room_server.api_url}/rooms/{room['room_id']}", headers=AUTH) as r:
        assert (await _json(r)) == {"result": 0}
    async with asyncio.timeout(3):
        await alice.disconnected.wait()
    assert room_server.media.leg_count == 0 and len(room_server.rooms) == 0


async def test_serve_runs_until_cancelled_and_logs_where(http: aiohttp.ClientSession) -> None:
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(serve("127.0.0.1", 0, APP_ID, APP_KEY, create_room="demo"))
        try:
            async with asyncio.timeout(5):
                while not any(e["event"] == "server_started" for e in logs):  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            started = next(e for e in logs if e["event"] == "server_started")
            async with http.get(f"{started['api_url']}/rooms/{started['room_id']}", headers=AUTH) as r:
                assert (await _json(r))["room"]["name"] == "demo"
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert started["url"].startswith("http://127.0.0.1:") and not started["url"].endswith(":0")
    assert APP_KEY not in repr(logs)


# --------------------------------------------------------------------------- failures


async def test_a_failing_handler_is_logged_counted_and_told_to_the_hook(
    room_server: RoomServer, room: dict[str, Any], raw_client: Connect
) -> None:
    """An unexpected exception in a handler answers a server error, is logged with its
    traceback, counted in ``enx_server_failures_total{where}`` and handed to the owner's hook."""
    from prometheus_client.parser import text_string_to_metric_families

    from bot.proto import GetMaxTalkers

    seen: list[tuple[str, BaseException]] = []
    room_server.failures.add_hook(lambda where, error: seen.append((where, error)))
    room_server.failures.add_hook(lambda where, error: 1 / 0)  # a failing hook changes nothing
    alice = await raw_client()
    await alice.join(room_server.mint_token(room["room_id"], "alice"))

    async def broken(session: Any, event: Any) -> None:
        raise RuntimeError("boom")

    handlers = room_server.signalling._handlers
    original, handlers[GetMaxTalkers] = handlers[GetMaxTalkers], broken
    with structlog.testing.capture_logs() as logs:
        reply = await alice.ack(GetMaxTalkers.WIRE)
    assert reply["result"] == ErrorCode.MALFORMED_REQUEST and "server error" in reply["msg"]
    failed = [e for e in logs if e["event"] == "request_failed"]
    assert len(failed) == 1 and failed[0]["exc_info"] is True and failed[0]["log_level"] == "error"
    assert [e["where"] for e in logs if e["event"] == "failure_hook_failed"] == ["signalling_handler"]
    assert [(w, str(e)) for w, e in seen] == [("signalling_handler", "boom")]
    assert room_server.failures.counts == {"signalling_handler": 1}
    async with aiohttp.ClientSession() as http, http.get(f"{room_server.url}/metrics") as r:
        text = await r.text()
    samples = {
        s.labels.get("where"): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "enx_server_failures_total"
    }
    assert samples == {"signalling_handler": 1.0}
    handlers[GetMaxTalkers] = original
    assert (await alice.ack(GetMaxTalkers.WIRE))["maxTalkers"] == 6  # the socket still works


async def test_a_failing_background_task_is_counted_where_it_ran(room_server: RoomServer) -> None:
    async def crash() -> None:
        raise ValueError("lost")

    with structlog.testing.capture_logs() as logs:
        task = room_server.signalling.tasks.spawn(crash(), name="crash", where="bandwidth_loop")
        with contextlib.suppress(ValueError):
            await task
        await asyncio.sleep(0)
    assert room_server.failures.counts == {"bandwidth_loop": 1}
    assert [e["task"] for e in logs if e["event"] == "task_failed"] == ["crash"]
    assert (
        room_server.registry.get_sample_value("enx_server_failures_total", {"where": "bandwidth_loop"}) == 1
    )


@pytest.mark.parametrize(
    "body,needle",
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"name": "a", "settings": {"quality": NaN}}', "NaN is not a JSON number"),
        ('{"name": "a", "n": Infinity}', "Infinity is not a JSON number"),
        ('{"name": "a", "n": 1e999}', "1e999 is out of range"),
    ],
)
async def test_hostile_json_bodies_get_400_not_500(
    room_server: RoomServer, http: aiohttp.ClientSession, body: str, needle: str
) -> None:
    headers = {**AUTH, "Content-Type": "application/json"}
    async with http.post(f"{room_server.api_url}/rooms", data=body, headers=headers) as r:
        assert r.status == 400
        assert needle in (await r.json())["error"]


@pytest.mark.parametrize("value", ["NaN", "1e999", "-Infinity"])
async def test_bandwidth_with_a_non_finite_number_is_400(
    room_server: RoomServer, http: aiohttp.ClientSession, value: str
) -> None:
    room_id = room_server.create_room(name="bw")["room_id"]
    body = '{"client_ids": ["x"], "bandwidth": ' + value + "}"
    headers = {**AUTH, "Content-Type": "application/json"}
    async with http.post(
        f"{room_server.url}/emulator/rooms/{room_id}/bandwidth", data=body, headers=headers
    ) as r:
        assert r.status == 400
        error = (await r.json())["error"]
        assert "JSON number" in error or "out of range" in error


@pytest.mark.parametrize("path", ["/nope", "/video/v3/rooms", "/favicon.ico"])
async def test_unknown_routes_answer_json(
    room_server: RoomServer, http: aiohttp.ClientSession, path: str
) -> None:
    async with http.get(f"{room_server.url}{path}") as r:
        assert r.status == 404
        assert r.content_type == "application/json"
        assert (await r.json())["result"] == 404


@pytest.mark.parametrize(
    "settings,needle",
    [
        ({"max_active_talkers": -5}, "settings.max_active_talkers' must be a whole number from 1 to 12"),
        ({"duration": 10**30}, "settings.duration' must be a whole number from 1 to 1440"),
        ({"participants": "-3"}, "settings.participants' must be a whole number from 1 to 20000"),
        ({"moderators": 10_000}, "settings.moderators' must be a whole number from 0 to 100"),
    ],
)
async def test_absurd_room_settings_are_refused(
    room_server: RoomServer, http: aiohttp.ClientSession, settings: dict[str, Any], needle: str
) -> None:
    body = {"name": "r", "settings": settings}
    async with http.post(f"{room_server.api_url}/rooms", json=body, headers=AUTH) as r:
        assert r.status == 400
        assert needle in (await r.json())["error"]
    async with http.get(f"{room_server.api_url}/rooms", headers=AUTH) as r:
        assert all(room["name"] != "r" for room in (await r.json())["rooms"])  # nothing stored


async def test_sensible_room_settings_are_kept(room_server: RoomServer, http: aiohttp.ClientSession) -> None:
    settings = {"max_active_talkers": 12, "duration": 1440, "participants": "50", "moderators": 2}
    async with http.post(
        f"{room_server.api_url}/rooms", json={"name": "ok", "settings": settings}, headers=AUTH
    ) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["room"]["settings"] | settings == (await r.json())["room"]["settings"]
