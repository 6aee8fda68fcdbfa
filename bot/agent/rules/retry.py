"""Which failed joins a retry may cure: decided on the room error's code, never on its text."""

from __future__ import annotations

from bot.proto import ErrorCode

PERMANENT = frozenset(
    {
        ErrorCode.INVALID_PARAMETERS,
        ErrorCode.NOT_PERMITTED,
        ErrorCode.TOKEN_INVALID,
        ErrorCode.TOKEN_EXPIRED,
        ErrorCode.TOKEN_ALREADY_USED,
        ErrorCode.TOKEN_WRONG_ROOM,
        ErrorCode.ROOM_NOT_FOUND,
    }
)
"""Room error codes no retry can cure (a bad or used token, a missing room, bad options)."""


def retryable(code: int | None) -> bool:
    """Whether a join that failed with room error ``code`` (None: no room error, e.g. the
    network or the media) may succeed later."""
    return code is None or code not in PERMANENT
