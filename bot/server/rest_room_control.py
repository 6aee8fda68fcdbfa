"""The emulator's hands on the waiting room and the room clock, for tests and demos without a
moderator client (HTTP Basic like the rest of ``/emulator``; errors as JSON):

- ``POST /emulator/rooms/{id}/awaited/{client_id}`` with ``{"action": "approve"|"deny"}``: as a
  moderator's ``approveAwaitedUser`` / ``denyAwaitedUser`` (404: nobody with that id waits);
- ``POST /emulator/rooms/{id}/end``: end the room now, as if its ``duration`` ran out (2003 to
  everyone in it and waiting).
"""

from __future__ import annotations

from aiohttp import web

from .errors import BadRequest
from .rest import EMULATOR_PREFIX, body_of
from .signalling import Signalling

SIGNALLING_KEY = web.AppKey("room_control_signalling", Signalling)


async def decide_awaited(request: web.Request) -> web.Response:
    signalling = request.app[SIGNALLING_KEY]
    room = signalling.rooms.get(request.match_info["room_id"])  # 404 before 400
    action = (await body_of(request)).get("action")
    if action not in ("approve", "deny"):
        raise BadRequest("field 'action' must be 'approve' or 'deny'")
    client_id = request.match_info["client_id"]
    await signalling.waiting_room.decide(room, client_id, approve=action == "approve", by="emulator")
    return web.json_response({"result": 0, "clientId": client_id, "action": action})


async def end_room(request: web.Request) -> web.Response:
    signalling = request.app[SIGNALLING_KEY]
    room = signalling.rooms.get(request.match_info["room_id"])
    await signalling.room_clocks.end(room)
    return web.json_response({"result": 0})


def add_routes(app: web.Application, signalling: Signalling) -> None:
    app[SIGNALLING_KEY] = signalling
    app.router.add_post(f"{EMULATOR_PREFIX}/rooms/{{room_id}}/awaited/{{client_id}}", decide_awaited)
    app.router.add_post(f"{EMULATOR_PREFIX}/rooms/{{room_id}}/end", end_room)
