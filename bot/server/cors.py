"""CORS for the endpoints a browser page calls: the network probe and the metrics.

The official web client probes ``internetDetectionUrl`` (``HEAD /status?rand=N``) with an XHR
from the page's origin before every reconnection attempt; an answer without
``Access-Control-Allow-Origin`` is blocked by the browser, the client concludes there is no
network and gives up (1165) instead of rejoining. So the open endpoints (``/status``,
``/metrics``: no auth, no secrets) answer every origin, errors included, and a preflight
(``OPTIONS``) with the methods they serve; Chrome's Private Network Access preflight (a public
page probing a server on a private address) is allowed too.

The authenticated REST API (``/video/v2``, ``/emulator``) is deliberately **not** opened to
browsers: its HTTP Basic credentials are the app key, which EnableX keeps on the application
server. A preflight there gets a JSON 403 saying so (and no CORS header, so the browser stops
before sending the key). Socket.IO sets its own CORS (``cors_allowed_origins="*"``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

OPEN_METHODS = "GET, HEAD, OPTIONS"
PREFLIGHT_MAX_AGE_S = 600
SERVER_ONLY = (
    "this API is called by application servers with the app key, never from a browser page: "
    "mint tokens on your server and hand the page the token"
)


def _open_headers(request: web.Request) -> dict[str, str]:
    headers = {"Access-Control-Allow-Origin": "*"}
    if request.method == "OPTIONS":
        headers["Access-Control-Allow-Methods"] = OPEN_METHODS
        headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_S)
        asked = request.headers.get("Access-Control-Request-Headers")
        if asked:
            # echoing what was asked is what "*" means, and "*" alone is not honoured everywhere
            headers["Access-Control-Allow-Headers"] = asked
        if request.headers.get("Access-Control-Request-Private-Network", "").lower() == "true":
            headers["Access-Control-Allow-Private-Network"] = "true"
    return headers


def cors_middleware(
    open_paths: Iterable[str],
    server_only_prefixes: tuple[str, ...],
    refuse: Callable[[int, str], web.Response],
) -> Middleware:
    """The middleware (outermost, so error answers carry the headers too).

    ``refuse(status, message)`` builds the JSON error the REST API answers with.
    """
    opened = frozenset(open_paths)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in opened:
            if request.method == "OPTIONS":
                return web.Response(status=204, headers={**_open_headers(request), "Allow": OPEN_METHODS})
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                exc.headers.update(_open_headers(request))
                raise
            response.headers.update(_open_headers(request))
            return response
        if request.method == "OPTIONS" and request.path.startswith(server_only_prefixes):
            log.info("rest_cors_refused", path=request.path, origin=request.headers.get("Origin"))
            return refuse(403, SERVER_ONLY)
        return await handler(request)

    return cors
