"""Errors the SDK raises to the application, each carrying an EnableX code (PROTOCOL.md 10).

One class per way of failing, all :class:`RoomError`, so an application can catch one type and
read ``code``/``msg`` exactly as a Flutter app reads ``onRoomError {result, msg}``.
"""

from __future__ import annotations

from typing import Any

from bot.proto import ErrorCode


class RoomError(Exception):
    """A room-level failure: ``code`` is the EnableX code, ``msg`` says what to do about it."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(f"{int(code)}: {msg}")
        self.code = int(code)
        self.msg = msg

    def to_payload(self) -> dict[str, Any]:
        """What ``on_room_error`` receives: ``{"result": code, "msg": msg}``."""
        return {"result": self.code, "msg": self.msg}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, msg={self.msg!r})"


class SignallingError(RoomError):
    """The signalling server could not be reached, or stopped answering (1161 by default)."""

    def __init__(self, msg: str, code: int = ErrorCode.SIGNALLING_CONNECTION_FAILED) -> None:
        super().__init__(code, msg)


class MediaError(RoomError):
    """A media leg failed to connect or broke (1160 by default)."""

    def __init__(self, msg: str, code: int = ErrorCode.MEDIA_CONNECTION_FAILED) -> None:
        super().__init__(code, msg)
