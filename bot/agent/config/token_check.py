"""What a config's tokens say before anyone joins: ``check`` decodes each envelope (no network),
and both ``check`` and ``run`` refuse a token whose room is not the config's ``room_id``.

A token names its room; a ``room_id`` written beside it would otherwise be ignored in silence
(issue 15, items 9 and 10). ``run`` leaves an undecodable token to the join, which reports it
with exit 3 as a refused join, as before.
"""

from __future__ import annotations

import time

from bot.proto import TokenError, decode_token

from ..errors import ConfigError
from .model import AgentConfig


def _tokens(cfg: AgentConfig) -> list[tuple[str, str]]:
    """(where, token) for every token the config gives, in bot order."""
    if cfg.issued_tokens:
        return [(f"{cfg.token_file} line {i}", t) for i, t in enumerate(cfg.issued_tokens, start=1)]
    out = []
    for i, bot in enumerate(cfg.bots):
        token = bot.token or cfg.token
        if token:
            out.append((f"bots[{i}] ({bot.name})" if bot.token else "token", token))
    return list(dict.fromkeys(out))


def check_tokens(cfg: AgentConfig, *, decode: bool) -> None:
    """ConfigError naming the first bad token (``decode``: every envelope must decode and be
    unexpired) or the first whose room is not ``room_id``."""
    now = time.time()
    for where, token in _tokens(cfg):
        try:
            envelope = decode_token(token)
            envelope.check_expiry(now)
        except TokenError as exc:
            if decode:
                raise ConfigError(f"{cfg.path}: {where}: {exc}") from None
            continue
        if cfg.room_id and envelope.room_id and envelope.room_id != cfg.room_id:
            raise ConfigError(
                f"{cfg.path}: {where} is for room {envelope.room_id}, but room_id is {cfg.room_id}: "
                "a token names its room; remove room_id or use a token for that room"
            )
