"""Issuing and checking room tokens: HS256 JWT in ``tokenId``, 15 minutes, single use.

Single use is by ``jti``. The official SDK rejoins with the token it joined with
(``isReconnecting``, ``oldClientIdForReconnect``: PROTOCOL.md section 8), so a used token is
accepted again only as a rejoin of the client that used it last; any other reuse is 4103.
Used tokens are written through to the store, so a restarted server still knows them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.proto import (
    ROLES,
    TOKEN_LIFETIME_S,
    ErrorCode,
    TokenError,
    TokenRequest,
    mint_token,
    verify_token_id,
)

from .store import Store


@dataclass(frozen=True, kw_only=True)
class Claims:
    """The verified claims of a token the server minted."""

    room_id: str
    name: str
    role: str
    user_ref: str
    jti: str
    exp: float
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class _Use:
    client_id: str
    exp: float


class TokenBook:
    """Mints tokens and remembers which ``jti`` joined as which client."""

    def __init__(
        self,
        app_key: str,
        *,
        clock: Callable[[], float],
        lifetime_s: int = TOKEN_LIFETIME_S,
        store: Store | None = None,
    ) -> None:
        self._app_key = app_key
        self._clock = clock
        self.lifetime_s = lifetime_s
        self._store = store or Store(None)
        self._used: dict[str, _Use] = {
            jti: _Use(client_id=client_id, exp=exp) for jti, client_id, exp in self._store.used_tokens()
        }

    def mint(
        self,
        *,
        host: str,
        room_id: str,
        name: str,
        role: str,
        user_ref: str = "",
        quality: str = "SD",
        data: dict[str, Any] | None = None,
    ) -> str:
        return mint_token(
            app_key=self._app_key,
            host=host,
            room_id=room_id,
            name=name,
            role=role,
            user_ref=user_ref,
            now=self._clock(),
            quality=quality,
            lifetime_s=self.lifetime_s,
            data=data,
        )

    def verify(self, request: TokenRequest) -> Claims:
        """Claims of a ``token`` request, or TokenError with the refusal code.

        Checks signature, expiry, claim types, the rejoin ``room`` field (4104) and single
        use (4103, or 4119 for a rejoin by another client). Room existence is the caller's.
        """
        try:
            raw = verify_token_id(request.envelope.get("tokenId"), app_key=self._app_key, now=self._clock())
            claims = _claims(raw)
        except (TypeError, ValueError) as exc:  # a signed token with claims of wrong types
            raise TokenError(f"token claims are malformed: {exc}") from None
        if request.room is not None and request.room != claims.room_id:
            raise TokenError("token was issued for another room", ErrorCode.TOKEN_WRONG_ROOM)
        use = self._used.get(claims.jti)
        if use is not None:
            if not request.is_reconnecting:
                raise TokenError("token was already used", ErrorCode.TOKEN_ALREADY_USED)
            if request.old_client_id != use.client_id:
                raise TokenError("rejoin refused: token was used by another client", ErrorCode.REJOIN_REFUSED)
        return claims

    def consume(self, claims: Claims, client_id: str) -> None:
        """Mark the token used by ``client_id`` (after a successful join)."""
        self._prune()
        self._used[claims.jti] = _Use(client_id=client_id, exp=claims.exp)
        self._store.save_used_token(claims.jti, client_id, claims.exp)

    def used_by(self, jti: str) -> str | None:
        """The client id that used ``jti`` last, if any."""
        use = self._used.get(jti)
        return None if use is None else use.client_id

    def _prune(self) -> None:
        """Expired tokens are refused anyway: forget them so the book stays small."""
        now = self._clock()
        expired = [j for j, u in self._used.items() if u.exp <= now]
        for jti in expired:
            del self._used[jti]
        if expired:
            self._store.forget_tokens_expired_by(now)


def _claims(raw: dict[str, Any]) -> Claims:
    def text(key: str) -> str:
        value = raw.get(key, "")
        if not isinstance(value, str):
            raise TokenError(f"token claim '{key}' must be a string", ErrorCode.TOKEN_INVALID)
        return value

    role = text("role") or "participant"
    if role not in ROLES:
        raise TokenError(f"token role {role!r} is not a room role", ErrorCode.TOKEN_INVALID)
    data = raw.get("data", {})
    jti = text("jti")
    if not jti:
        raise TokenError("token has no jti", ErrorCode.TOKEN_INVALID)
    return Claims(
        room_id=text("room_id"),
        name=text("name"),
        role=role,
        user_ref=text("user_ref"),
        jti=jti,
        exp=float(raw["exp"]),
        data=data if isinstance(data, dict) else {},
    )
