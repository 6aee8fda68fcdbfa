"""CORS on the room server's REST surface, as a browser sees it (real HTTP on loopback).

The official web client probes ``internetDetectionUrl`` with an XHR from the page's origin
before each reconnection attempt: without ``Access-Control-Allow-Origin`` the browser hides the
answer and the client gives up (1165) instead of rejoining.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from conftest import APP_ID, APP_KEY, RawClient

from bot.server import RoomServer

PAGE = "http://app.example.test:3000"  # a page origin other than the server's
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{APP_ID}:{APP_KEY}".encode()).decode()}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _detection_url(room_server: RoomServer, raw_client: Callable[[], Awaitable[RawClient]]) -> str:
    """The probe URL exactly as ``room-connected`` hands it to a client."""
    room_id = room_server.create_room("cors")["room_id"]
    client = await raw_client()
    _, connected = await client.join(room_server.mint_token(room_id, "web"))
    url: str = connected["internetDetectionUrl"]
    assert url.startswith(room_server.url)
    return url


async def test_a_browser_preflight_on_status_is_allowed_from_any_origin(
    room_server: RoomServer, raw_client: Callable[[], Awaitable[RawClient]], http: aiohttp.ClientSession
) -> None:
    url = await _detection_url(room_server, raw_client)
    headers = {
        "Origin": PAGE,
        "Access-Control-Request-Method": "HEAD",
        "Access-Control-Request-Headers": "content-type, x-requested-with",
    }
    async with http.options(url + "?rand=12345", headers=headers) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        methods = {m.strip() for m in r.headers["Access-Control-Allow-Methods"].split(",")}
        assert {"GET", "HEAD", "OPTIONS"} <= methods
        assert r.headers["Access-Control-Allow-Headers"] == "content-type, x-requested-with"
        assert int(r.headers["Access-Control-Max-Age"]) > 0
        assert "Access-Control-Allow-Private-Network" not in r.headers


async def test_head_and_get_on_status_carry_the_header_and_are_never_cached(
    room_server: RoomServer, raw_client: Callable[[], Awaitable[RawClient]], http: aiohttp.ClientSession
) -> None:
    url = await _detection_url(room_server, raw_client)
    async with http.head(url + "?rand=65537", headers={"Origin": PAGE}) as r:
        assert r.status == 200
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert r.headers["Cache-Control"] == "no-store"
    async with http.get(url, headers={"Origin": PAGE}) as r:
        assert r.status == 200 and await r.json() == {"result": 0}
        assert r.headers["Access-Control-Allow-Origin"] == "*"


async def test_a_private_network_preflight_on_status_is_allowed(
    room_server: RoomServer, http: aiohttp.ClientSession
) -> None:
    """Chrome asks before a public page may reach a server on a private address."""
    headers = {
        "Origin": "https://public.example.test",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Private-Network": "true",
    }
    async with http.options(room_server.url + "/status", headers=headers) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Private-Network"] == "true"
        assert r.headers["Access-Control-Allow-Origin"] == "*"


async def test_an_error_on_status_is_readable_by_the_page(
    room_server: RoomServer, http: aiohttp.ClientSession
) -> None:
    async with http.post(room_server.url + "/status", headers={"Origin": PAGE}) as r:
        assert r.status == 405
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        body: dict[str, Any] = await r.json()
        assert body["result"] == 405


async def test_metrics_are_readable_from_a_browser_dashboard(
    room_server: RoomServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(room_server.url + "/metrics", headers={"Origin": PAGE}) as r:
        assert r.status == 200 and "enx_server_" in await r.text()
        assert r.headers["Access-Control-Allow-Origin"] == "*"
    preflight = {"Origin": PAGE, "Access-Control-Request-Method": "GET"}
    async with http.options(room_server.url + "/metrics", headers=preflight) as r:
        assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("path", ["/video/v2/rooms", "/video/v2/rooms/x/tokens", "/emulator/rooms/x"])
async def test_the_authenticated_api_refuses_browser_preflights(
    room_server: RoomServer, http: aiohttp.ClientSession, path: str
) -> None:
    """Its credentials are the app key: a page must never hold them."""
    headers = {
        "Origin": PAGE,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with http.options(room_server.url + path, headers=headers) as r:
        assert r.status == 403
        assert "Access-Control-Allow-Origin" not in r.headers
        body: dict[str, Any] = await r.json()
        assert body["result"] == 403 and "application server" in body["error"]
    # the API itself works as before for a server, and hands a browser no CORS header
    async with http.get(room_server.api_url + "/rooms", headers={**AUTH, "Origin": PAGE}) as r:
        assert r.status == 200
        assert "Access-Control-Allow-Origin" not in r.headers
