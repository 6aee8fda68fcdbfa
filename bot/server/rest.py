"""REST API of the room server (PROTOCOL.md section 11) and the emulator's endpoints.

``DELETE /video/v2/rooms/{id}/participants/{client_id}`` drops a participant as a moderator
would (``room-disconnected`` 2001 to it, no reconnection; 404 if it is not in the room).

Emulator (tests and demos): ``GET /emulator/rooms/{id}`` (room view),
``POST /emulator/rooms/{id}/clients/{client_id}/drop`` (cut that participant's socket as a
network fault would; 404 if it has none), ``POST /emulator/rooms/{id}/bandwidth`` with
``{"client_ids": [...], "bandwidth": <kbps>}`` (alert) or ``{"client_ids": [...], "restored":
true}`` (restore; optional ``bandwidth``): the bandwidth detector's own events; ``POST
/emulator/rooms/{id}/hard-mute`` with ``{"muted": bool}`` (the room) or ``{"muted": bool,
"client_id": ..., "kind": "audio"|"video"}`` and ``POST /emulator/rooms/{id}/recording`` with
``{"on": bool}``: a moderator's hard mutes and recording notices (docs/protocol/moderation.md). ``GET|HEAD
/status`` (no auth) answers the clients' network probe (``internetDetectionUrl``). ``GET
/metrics`` (no auth, like most exporters: room ids and counts, no secrets) is the Prometheus
exposition of :mod:`.metrics` plus the process's ``process_*``. Both answer browsers of any
origin (CORS, :mod:`.cors`); the authenticated API refuses browser preflights.

Everything under ``/video/v2`` and ``/emulator`` needs HTTP Basic ``APP_ID:APP_KEY``; errors
are JSON ``{result: <HTTP status>, error}``. Tokens carry as ``host`` the Host header the
request came in on: the address the application server reached us at is the one its
clients can reach too.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest

from .api import RoomApi
from .cors import cors_middleware
from .errors import BadRequest, ClientNotFound, RoomNotFound, ServerError
from .metrics import FastPathCollector
from .rooms import check_role

log = structlog.get_logger(__name__)

API_PREFIX = "/video/v2"
STATUS_PATH = "/status"
METRICS_PATH = "/metrics"
EMULATOR_PREFIX = "/emulator"
PROTECTED_PREFIXES = (API_PREFIX, EMULATOR_PREFIX)
REALM = 'Basic realm="enx-bot room server", charset="UTF-8"'

API_KEY = web.AppKey("room_api", RoomApi)
"""Where the handlers find the server they serve (``request.app[API_KEY]``)."""
PROCESS_KEY = web.AppKey("process_registry", CollectorRegistry)
"""The process's CPU and memory families, appended to ``GET /metrics``."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"result": status, "error": message}, status=status, headers=headers)


def _credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _api(request: web.Request) -> RoomApi:
    return request.app[API_KEY]


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """HTTP Basic on the protected prefixes; every error as JSON with its status (an unknown
    route or method included)."""
    try:
        if request.path.startswith(PROTECTED_PREFIXES):
            api = _api(request)
            creds = _credentials(request.headers.get("Authorization"))
            # evaluate both comparisons: no early exit that tells which half was wrong
            ok = creds is not None and (_same(creds[0], api.app_id) & _same(creds[1], api.app_key))
            if not ok:
                log.info("rest_unauthorized", path=request.path, remote=request.remote)
                return error_response(
                    401, "authentication required: HTTP Basic APP_ID:APP_KEY", {"WWW-Authenticate": REALM}
                )
        return await handler(request)
    except ServerError as exc:
        status = 404 if isinstance(exc, RoomNotFound | ClientNotFound) else 400
        return error_response(status, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason)


class _NotStrict(ValueError):
    """Python's json reads NaN, Infinity and 1e999; JSON has no such numbers."""


def _no_constant(name: str) -> Any:
    raise _NotStrict(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999
        raise _NotStrict(f"{text} is out of range")
    return value


async def body_of(request: web.Request) -> dict[str, Any]:
    """The JSON object of a request: strict JSON (no NaN or Infinity, no number that overflows
    to infinity), nested no deeper than Python parses, else 400 with the reason."""
    try:
        text = await request.text()
        body = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise BadRequest("body is nested too deeply") from None
    except _NotStrict as exc:
        raise BadRequest(f"body: {exc}") from None
    except (ValueError, LookupError):  # bad JSON, bad bytes for the charset, bad charset
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


# ---------------------------------------------------------------------- /video/v2


async def create_room(request: web.Request) -> web.Response:
    body = await body_of(request)
    if "name" not in body:
        raise BadRequest("field 'name' is required")
    room = _api(request).create_room(
        name=body["name"], settings=body.get("settings"), owner_ref=body.get("owner_ref", "")
    )
    return web.json_response({"result": 0, "room": room})


async def list_rooms(request: web.Request) -> web.Response:
    return web.json_response({"result": 0, "rooms": [r.to_rest() for r in _api(request).rooms]})


async def get_room(request: web.Request) -> web.Response:
    room = _api(request).rooms.get(request.match_info["room_id"])
    return web.json_response({"result": 0, "room": room.to_rest()})


async def delete_room(request: web.Request) -> web.Response:
    await _api(request).delete_room(request.match_info["room_id"])
    return web.json_response({"result": 0})


async def create_token(request: web.Request) -> web.Response:
    api = _api(request)
    room_id = request.match_info["room_id"]
    api.rooms.get(room_id)  # 404 before 400: the URL is checked first
    body = await body_of(request)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("field 'name' is required and must be a non-empty string")
    role = check_role(body.get("role"))
    user_ref = body.get("user_ref", "")
    if not isinstance(user_ref, str):
        raise BadRequest("field 'user_ref' must be a string")
    data = body.get("data")
    if data is not None and not isinstance(data, dict):
        raise BadRequest("field 'data' must be an object")
    token = api.mint_token(room_id, name=name, role=role, user_ref=user_ref, data=data, host=request.host)
    return web.json_response({"result": 0, "token": token})


# ---------------------------------------------------------------------- /emulator


async def room_view(request: web.Request) -> web.Response:
    return web.json_response(_api(request).room_view(request.match_info["room_id"]))


async def drop_participant(request: web.Request) -> web.Response:
    """A moderator's drop on behalf of the application server (no reconnection follows)."""
    await _api(request).drop_participant(request.match_info["room_id"], request.match_info["client_id"])
    return web.json_response({"result": 0})


async def drop_client(request: web.Request) -> web.Response:
    await _api(request).drop_connection(request.match_info["room_id"], request.match_info["client_id"])
    return web.json_response({"result": 0})


async def hard_mute(request: web.Request) -> web.Response:
    """``{muted: bool}`` the room's audio, or ``{muted, client_id, kind?: audio|video}`` one
    participant's; as a moderator would (400 when it is so already)."""
    api = _api(request)
    room_id = request.match_info["room_id"]
    api.rooms.get(room_id)  # 404 before 400
    body = await body_of(request)
    muted, client_id, kind = body.get("muted"), body.get("client_id"), body.get("kind", "audio")
    if not isinstance(muted, bool):
        raise BadRequest("field 'muted' must be true or false")
    if client_id is not None and (not isinstance(client_id, str) or not 0 < len(client_id) <= 128):
        raise BadRequest("field 'client_id' must be a client id")
    if kind not in ("audio", "video") or (client_id is None and kind != "audio"):
        raise BadRequest("field 'kind' must be 'audio' or 'video' ('audio' for the whole room)")
    return web.json_response(await api.hard_mute(room_id, muted, client_id=client_id, kind=kind))


async def recording(request: web.Request) -> web.Response:
    """``{on: bool}``: the room's recording notices, as a moderator's startRecord / stopRecord."""
    api = _api(request)
    room_id = request.match_info["room_id"]
    api.rooms.get(room_id)
    on = (await body_of(request)).get("on")
    if not isinstance(on, bool):
        raise BadRequest("field 'on' must be true or false")
    return web.json_response(await api.set_recording(room_id, on))


async def bandwidth(request: web.Request) -> web.Response:
    api = _api(request)
    room_id = request.match_info["room_id"]
    api.rooms.get(room_id)  # 404 before 400
    body = await body_of(request)
    client_ids = body.get("client_ids")
    if (
        not isinstance(client_ids, list)
        or not client_ids
        or not all(isinstance(c, str) and c for c in client_ids)
    ):
        raise BadRequest("field 'client_ids' must be a non-empty list of client ids")
    restored = body.get("restored", False)
    if not isinstance(restored, bool):
        raise BadRequest("field 'restored' must be true or false")
    kbps = body.get("bandwidth")
    if kbps is not None and (isinstance(kbps, bool) or not isinstance(kbps, int | float) or kbps <= 0):
        raise BadRequest("field 'bandwidth' must be a positive number of kbps")
    if not restored and kbps is None:
        raise BadRequest("give 'bandwidth' (kbps) for an alert, or 'restored': true")
    await api.inject_bandwidth(room_id, client_ids, kbps=kbps, restored=restored)
    return web.json_response({"result": 0})


# ---------------------------------------------------------------------- open endpoints


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition: the server's registry, then the process's CPU, memory and
    ``enx_fast_path``."""
    body = generate_latest(_api(request).registry) + generate_latest(request.app[PROCESS_KEY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def status(request: web.Request) -> web.Response:
    """``internetDetectionUrl``: clients probe it (``HEAD ?rand=N``) before rejoining; a cached
    answer would say "online" when we are not."""
    return web.json_response({"result": 0}, headers={"Cache-Control": "no-store"})


def make_app(api: RoomApi) -> web.Application:
    """The aiohttp application: REST routes, auth and JSON errors (Socket.IO attaches later)."""
    process_registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=process_registry)
    process_registry.register(FastPathCollector())
    cors = cors_middleware((STATUS_PATH, METRICS_PATH), PROTECTED_PREFIXES, error_response)
    app = web.Application(middlewares=[cors, guard])
    app[API_KEY] = api
    app[PROCESS_KEY] = process_registry
    app.router.add_get(STATUS_PATH, status)
    app.router.add_get(METRICS_PATH, metrics)
    app.router.add_post(f"{API_PREFIX}/rooms", create_room)
    app.router.add_get(f"{API_PREFIX}/rooms", list_rooms)
    app.router.add_get(f"{API_PREFIX}/rooms/{{room_id}}", get_room)
    app.router.add_delete(f"{API_PREFIX}/rooms/{{room_id}}", delete_room)
    app.router.add_post(f"{API_PREFIX}/rooms/{{room_id}}/tokens", create_token)
    app.router.add_delete(f"{API_PREFIX}/rooms/{{room_id}}/participants/{{client_id}}", drop_participant)
    app.router.add_get(f"{EMULATOR_PREFIX}/rooms/{{room_id}}", room_view)
    app.router.add_post(f"{EMULATOR_PREFIX}/rooms/{{room_id}}/clients/{{client_id}}/drop", drop_client)
    app.router.add_post(f"{EMULATOR_PREFIX}/rooms/{{room_id}}/bandwidth", bandwidth)
    app.router.add_post(f"{EMULATOR_PREFIX}/rooms/{{room_id}}/hard-mute", hard_mute)
    app.router.add_post(f"{EMULATOR_PREFIX}/rooms/{{room_id}}/recording", recording)
    return app
