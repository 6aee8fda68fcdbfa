"""Where a bot's token comes from: given, minted by the embedded server, or minted via REST."""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from bot.proto import redact

from .errors import JoinError


class TokenSource(Protocol):
    async def token_for(self, name: str, role: str, user_ref: str) -> str: ...


class StaticToken:
    def __init__(self, token: str) -> None:
        self._token = token

    async def token_for(self, name: str, role: str, user_ref: str) -> str:
        return self._token

    def __repr__(self) -> str:
        return f"StaticToken({redact(self._token)})"


class RestTokens:
    """Mints one token per bot through ``POST {api_url}/rooms/{room_id}/tokens`` (Basic auth)."""

    def __init__(
        self, api_url: str, app_id: str, app_key: str, room_id: str, timeout_s: float = 10.0
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.room_id = room_id
        self._auth = {"Authorization": aiohttp.BasicAuth(app_id, app_key).encode()}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    def __repr__(self) -> str:
        return f"RestTokens({self.api_url!r}, room_id={self.room_id!r}, app_key=***)"

    async def token_for(self, name: str, role: str, user_ref: str) -> str:
        url = f"{self.api_url}/rooms/{self.room_id}/tokens"
        host = urlsplit(self.api_url).netloc or self.api_url
        body = {"name": name, "role": role, "user_ref": user_ref or name}
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as http,
                http.post(url, json=body, headers=self._auth) as resp,
            ):
                try:
                    data: Any = await resp.json(content_type=None)
                except (ValueError, aiohttp.ContentTypeError):
                    data = None
                status = resp.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise JoinError(
                f"cannot reach the REST API at {host} to mint a token ({reason}): check api_url / ENX_API_URL"
            ) from None
        error = data.get("error") or data.get("msg") if isinstance(data, dict) else None
        if status == 401:
            raise JoinError(
                f"{host} refused the app id/key (401): check app_id/app_key (ENX_APP_ID/ENX_APP_KEY)"
            )
        if status == 404:
            raise JoinError(f"{host} has no room {self.room_id!r} (404): check room_id / ENX_ROOM_ID")
        if status >= 400 or not isinstance(data, dict) or not isinstance(data.get("token"), str):
            raise JoinError(f"{host} did not issue a token (HTTP {status}: {error or 'unexpected reply'})")
        return str(data["token"])
