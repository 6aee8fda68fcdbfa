"""Where a bot's token comes from: given, minted by the embedded server, minted via REST, or
asked from the user's own app server (``token_url``); and rooms created through REST.

Failures raise :class:`TokenSourceError` (a :class:`JoinError`, exit 3) whose ``retryable`` says
whether trying again later can help: an unreachable server or a 5xx can, a refused key cannot.
"""

from __future__ import annotations

import base64
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from bot.proto import ErrorCode, redact

from ..errors import JoinError


class TokenSource(Protocol):
    async def token_for(self, name: str, role: str, user_ref: str) -> str: ...


class TokenSourceError(JoinError):
    """No token (or room) for a bot; ``retryable``: a later attempt may succeed. ``code`` (the
    ``room_error`` line's): the HTTP status of the answer, or 1161 when nothing answered."""

    def __init__(
        self, message: str, *, retryable: bool, code: int = ErrorCode.SIGNALLING_CONNECTION_FAILED
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = int(code)


class StaticToken:
    def __init__(self, token: str) -> None:
        self._token = token

    async def token_for(self, name: str, role: str, user_ref: str) -> str:
        return self._token

    def __repr__(self) -> str:
        return f"StaticToken({redact(self._token)})"


def basic_auth(app_id: str, app_key: str) -> dict[str, str]:
    """The HTTP Basic ``Authorization`` header (aiohttp's BasicAuth is deprecated)."""
    return {"Authorization": "Basic " + base64.b64encode(f"{app_id}:{app_key}".encode()).decode()}


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


async def _post_json(
    session: aiohttp.ClientSession | None,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    limit: aiohttp.ClientTimeout,
    what: str,
    hint: str,
) -> tuple[int, Any]:
    """POST ``body``; ``(status, JSON or None)``. Unreachable: a retryable TokenSourceError."""

    async def post(http: aiohttp.ClientSession) -> tuple[int, Any]:
        async with http.post(url, json=body, headers=headers, timeout=limit) as resp:
            try:
                data: Any = await resp.json(content_type=None)
            except (ValueError, aiohttp.ContentTypeError):
                data = None
            return resp.status, data

    try:
        if session is not None:
            return await post(session)
        async with aiohttp.ClientSession() as http:
            return await post(http)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise TokenSourceError(
            f"cannot reach {what} at {_host(url)} ({reason}): {hint}", retryable=True
        ) from None


def _transient(status: int) -> bool:
    return status >= 500 or status in (408, 429)


class RestTokens:
    """Mints one token per bot through ``POST {api_url}/rooms/{room_id}/tokens`` (Basic auth).

    With ``session`` (see :class:`RestApi`) every token reuses its connections; without, each
    call opens its own."""

    def __init__(
        self,
        api_url: str,
        app_id: str,
        app_key: str,
        room_id: str,
        timeout_s: float = 10.0,
        *,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.room_id = room_id
        self._auth = basic_auth(app_id, app_key)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session

    def __repr__(self) -> str:
        return f"RestTokens({self.api_url!r}, room_id={self.room_id!r}, app_key=***)"

    async def token_for(self, name: str, role: str, user_ref: str) -> str:
        url = f"{self.api_url}/rooms/{self.room_id}/tokens"
        host = _host(self.api_url)
        body = {"name": name, "role": role, "user_ref": user_ref or name}
        status, data = await _post_json(
            self._session, url, body, self._auth, self._timeout,
            "the REST API", "check api_url / ENX_API_URL",
        )  # fmt: skip
        error = data.get("error") or data.get("msg") if isinstance(data, dict) else None
        if status == 401:
            raise TokenSourceError(
                f"{host} refused the app id/key (401): check app_id/app_key (ENX_APP_ID/ENX_APP_KEY)",
                retryable=False,
                code=status,
            )
        if status == 404:
            raise TokenSourceError(
                f"{host} has no room {self.room_id!r} (404): check room_id / ENX_ROOM_ID",
                retryable=False,
                code=status,
            )
        if status >= 400 or not isinstance(data, dict) or not isinstance(data.get("token"), str):
            raise TokenSourceError(
                f"{host} did not issue a token (HTTP {status}: {error or 'unexpected reply'})",
                retryable=_transient(status),
                code=status,
            )
        return str(data["token"])


class UrlTokens:
    """Asks the user's own app server: ``POST token_url {name, role, user_ref, roomId}`` returns
    ``{token}`` (the way an EnableX app hands tokens to its clients)."""

    def __init__(
        self, url: str, room_id: str, session: aiohttp.ClientSession | None = None, timeout_s: float = 10.0
    ) -> None:
        self.url = url
        self.room_id = room_id
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    def __repr__(self) -> str:
        return f"UrlTokens({self.url!r}, room_id={self.room_id!r})"

    async def token_for(self, name: str, role: str, user_ref: str) -> str:
        body = {"name": name, "role": role, "user_ref": user_ref or name, "roomId": self.room_id}
        status, data = await _post_json(
            self._session, self.url, body, {}, self._timeout, "the token_url server", "check token_url"
        )
        token = data.get("token") if isinstance(data, dict) else None
        if status >= 400 or not isinstance(token, str) or not token:
            error = (data.get("error") or data.get("msg")) if isinstance(data, dict) else None
            raise TokenSourceError(
                f"{_host(self.url)} (token_url) did not issue a token "
                f'(HTTP {status}: {error or "no token in the reply"}): it must answer {{"token": ...}}',
                retryable=_transient(status),
                code=status,
            )
        return token


class RestApi:
    """One HTTP session to the REST API for a whole swarm: rooms and tokens. ``aclose()`` it."""

    def __init__(self, api_url: str, app_id: str, app_key: str, timeout_s: float = 10.0) -> None:
        self.api_url = api_url.rstrip("/")
        self._app_id = app_id
        self._app_key = app_key
        self._timeout_s = timeout_s
        # many bots mint at once: keep connections, allow as many as the ramp needs
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))

    def __repr__(self) -> str:
        return f"RestApi({self.api_url!r}, app_key=***)"

    def tokens(self, room_id: str) -> RestTokens:
        return RestTokens(
            self.api_url, self._app_id, self._app_key, room_id, self._timeout_s, session=self.session
        )

    async def create_room(self, name: str, participants: int) -> str:
        """``POST {api_url}/rooms``; the new room's id. Failures are TokenSourceErrors (exit 3)."""
        body = {
            "name": name,
            "owner_ref": "enx-bot",
            "settings": {
                "description": "enx-bot load test",
                "mode": "group",
                "scheduled": False,
                "adhoc": False,
                "moderators": "1",
                "participants": str(participants),
                "quality": "SD",
                "auto_recording": False,
            },
        }
        timeout = aiohttp.ClientTimeout(total=self._timeout_s)
        auth = basic_auth(self._app_id, self._app_key)
        url = f"{self.api_url}/rooms"
        status, data = await _post_json(
            self.session, url, body, auth, timeout, "the REST API", "check api_url / ENX_API_URL"
        )
        room = data.get("room") if isinstance(data, dict) else None
        room_id = room.get("room_id") if isinstance(room, dict) else None
        if status >= 400 or not room_id:
            error = (data.get("error") or data.get("msg")) if isinstance(data, dict) else None
            raise TokenSourceError(
                f"{_host(self.api_url)} did not create room {name!r} (HTTP {status}: "
                f"{error or 'unexpected reply'})",
                retryable=False,
                code=status,
            )
        return str(room_id)

    async def aclose(self) -> None:
        await self.session.close()
