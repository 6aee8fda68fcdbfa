"""Errors of the room server, and the codes it answers with.

Socket.IO refusals use :class:`bot.proto.ErrorCode` (the 41xx token and request codes,
1155/1159/1168 for requests the SDKs know). REST errors answer ``{result: <code>, error}``
where ``result`` is the HTTP status (400, 401, 404, 405): application servers look at the
status, and a second numbering would only add a table to keep in sync.
"""

from __future__ import annotations

from bot.proto import ErrorCode


class ServerError(Exception):
    """Base of everything the room server raises on purpose; ``code`` is what to answer."""

    code: int = int(ErrorCode.INVALID_PARAMETERS)

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = int(code)


class BadRequest(ServerError):
    """A REST body or in-process argument that does not fit (HTTP 400)."""

    code = 400


class RoomNotFound(ServerError, LookupError):
    """No room with that id on this server (HTTP 404, Socket.IO 4105)."""

    code = int(ErrorCode.ROOM_NOT_FOUND)


class ClientNotFound(ServerError, LookupError):
    """No (connected) participant with that client id in the room (HTTP 404)."""

    code = 404


class RequestRefused(ServerError):
    """A Socket.IO request that is well formed but not allowed now (ack ``{result, msg}``)."""


class NegotiationRefused(ServerError):
    """An offer or candidate the media side cannot use (ack 4122 / 4121)."""

    code = int(ErrorCode.MEDIA_NEGOTIATION_FAILED)


MediaError = NegotiationRefused
"""The old name of :class:`NegotiationRefused`, kept for one release."""
