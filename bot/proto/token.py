"""The token envelope: base64 of a JSON object whose ``tokenId`` is a JWT (PROTOCOL.md section 1).

Pure functions: the caller passes ``now`` so expiry checks need no clock. The client reads the
JWT claims without verifying them (it has no key) only to fail early and clearly; the server
mints and verifies. No function here puts a whole token, key or signature in a message.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt

from .errors import ErrorCode, TokenError

TOKEN_LIFETIME_S = 15 * 60
# HS256 wants a key as long as its hash (RFC 7518 3.2): PyJWT warns below it, ``serve`` refuses.
MIN_APP_KEY_BYTES = 32
_B64 = re.compile(r"[A-Za-z0-9+/_-]+=*")
QUALITIES = ("HD", "SD", "LD")
ROLES = ("moderator", "participant", "viewer", "audience")


def redact(secret: str | None, keep: int = 6) -> str:
    """Enough of a secret to tell two apart in a log, never enough to use it."""
    if not secret:
        return "<none>"
    if len(secret) <= keep * 2:
        return "***"
    return f"{secret[:keep]}…({len(secret)} chars)"


@dataclass(frozen=True, kw_only=True)
class TokenEnvelope:
    """A decoded token. ``raw`` is sent back to the server unchanged in the ``token`` event."""

    host: str
    quality: str
    secure: bool = False
    token_id: str | None = None
    gateway: str | None = None
    log_id: str | None = None
    claims: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    text: str = field(default="", repr=False)

    @property
    def room_id(self) -> str | None:
        return None if self.claims is None else self.claims.get("room_id")

    @property
    def name(self) -> str | None:
        return None if self.claims is None else self.claims.get("name")

    @property
    def role(self) -> str | None:
        return None if self.claims is None else self.claims.get("role")

    @property
    def expires_at(self) -> float | None:
        exp = None if self.claims is None else self.claims.get("exp")
        return float(exp) if isinstance(exp, int | float) else None

    def __repr__(self) -> str:
        return (
            f"TokenEnvelope(host={self.host!r}, room_id={self.room_id!r}, name={self.name!r}, "
            f"role={self.role!r}, token={redact(self.text)})"
        )

    __str__ = __repr__

    def check_expiry(self, now: float) -> None:
        exp = self.expires_at
        if exp is not None and now >= exp:
            raise TokenError(
                f"token expired {int(now - exp)} s ago: ask your application server for a new one",
                ErrorCode.TOKEN_EXPIRED,
            )

    @property
    def signalling_url(self) -> str:
        """Where the Socket.IO connection goes: the gateway if any, else ``host``."""
        target = self.gateway or self.host
        if "://" in target:
            return target.rstrip("/")
        return f"{'https' if self.secure else 'http'}://{target}"


def decode_token(text: object) -> TokenEnvelope:
    """Decode what every EnableX SDK decodes: ``JSON.parse(base64decode(token))``."""
    if not isinstance(text, str) or not text.strip():
        raise TokenError("token is empty: set ENX_TOKEN or the config's token")
    stripped = text.strip()
    if not _B64.fullmatch(stripped):
        raise TokenError(
            f"token {redact(stripped)} is not base64: copy the whole token from your application server"
        )
    try:
        padded = stripped + "=" * (-len(stripped) % 4)
        try:
            blob = base64.b64decode(padded, validate=True)
        except binascii.Error:
            blob = base64.urlsafe_b64decode(padded)
    except (binascii.Error, ValueError):
        raise TokenError(
            f"token {redact(stripped)} is not base64: copy the whole token from your application server"
        ) from None
    try:
        obj = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise TokenError(
            f"token {redact(stripped)} does not decode to JSON (truncated?): copy the whole "
            "token from your application server"
        ) from None
    if not isinstance(obj, dict):
        raise TokenError(f"token {redact(stripped)} decodes to {type(obj).__name__}, not an object")
    host = obj.get("host")
    if not isinstance(host, str) or not host:
        raise TokenError(f"token {redact(stripped)} has no 'host': it was not made for a room")
    settings = (obj.get("roomMeta") or {}).get("settings") if isinstance(obj.get("roomMeta"), dict) else None
    quality = settings.get("quality") if isinstance(settings, dict) else None
    if not isinstance(quality, str):
        raise TokenError(f"token {redact(stripped)} has no roomMeta.settings.quality")
    token_id = obj.get("tokenId")
    claims = read_claims(token_id) if isinstance(token_id, str) else None
    return TokenEnvelope(
        host=host,
        quality=quality,
        secure=bool(obj.get("secure", False)),
        token_id=token_id if isinstance(token_id, str) else None,
        gateway=obj.get("gateway") if isinstance(obj.get("gateway"), str) else None,
        log_id=obj.get("logId") if isinstance(obj.get("logId"), str) else None,
        claims=claims,
        raw=obj,
        text=stripped,
    )


def read_claims(token_id: str) -> dict[str, Any] | None:
    """JWT claims read unverified; None when ``tokenId`` is not a JWT (EnableX's may not be)."""
    try:
        claims = jwt.decode(token_id, options={"verify_signature": False, "verify_exp": False})
    except jwt.PyJWTError:
        return None
    return claims if isinstance(claims, dict) else None


def encode_envelope(obj: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode("ascii")


def mint_token(
    *,
    app_key: str,
    host: str,
    room_id: str,
    name: str,
    role: str,
    user_ref: str = "",
    now: float,
    secure: bool = False,
    quality: str = "SD",
    lifetime_s: int = TOKEN_LIFETIME_S,
    jti: str | None = None,
    data: dict[str, Any] | None = None,
) -> str:
    """A token as the local server issues it: an envelope around an HS256 JWT (the app key)."""
    claims: dict[str, Any] = {
        "room_id": room_id,
        "name": name,
        "role": role,
        "user_ref": user_ref,
        "jti": jti or uuid.uuid4().hex,
        "iat": int(now),
        "exp": int(now) + lifetime_s,
    }
    if data:
        claims["data"] = data
    token_id = jwt.encode(claims, app_key, algorithm="HS256")
    signature = token_id.rsplit(".", 1)[-1]
    return encode_envelope(
        {
            "tokenId": token_id,
            "host": host,
            "secure": secure,
            "signature": signature,
            "roomMeta": {"settings": {"quality": quality, "media_configuration": "default"}},
            "logId": claims["jti"],
        }
    )


def verify_token_id(token_id: object, *, app_key: str, now: float) -> dict[str, Any]:
    """Verified claims of a ``tokenId`` from :func:`mint_token`, or a TokenError with a code."""
    if not isinstance(token_id, str) or not token_id:
        raise TokenError("token has no tokenId", ErrorCode.TOKEN_INVALID)
    try:
        claims = jwt.decode(
            token_id,
            app_key,
            algorithms=["HS256"],
            options={"verify_exp": False, "require": ["room_id", "jti", "exp"]},
        )
    except jwt.InvalidSignatureError:
        raise TokenError("token signature does not match this server's app key") from None
    except jwt.PyJWTError as exc:
        raise TokenError(f"token is not valid: {exc}") from None
    if now >= float(claims["exp"]):
        raise TokenError("token expired", ErrorCode.TOKEN_EXPIRED)
    return claims
