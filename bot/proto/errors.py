"""Error codes and protocol errors, shared by the client and the server.

Codes follow PROTOCOL.md section 10 (SDK-reported) and the 41xx token refusals; the
server's own additions are documented in the README.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    SUCCESS = 0
    # SDK-side codes (PROTOCOL.md section 10)
    INVALID_PARAMETERS = 1155
    STREAM_NOT_FOUND = 1159
    MEDIA_CONNECTION_FAILED = 1160
    SIGNALLING_CONNECTION_FAILED = 1161
    NETWORK_DISCONNECTED = 1163
    NETWORK_RECONNECTED = 1164
    RECONNECT_ATTEMPTS_EXHAUSTED = 1165
    RECONNECT_TIMED_OUT = 1166
    NOT_PERMITTED = 1168
    ROOM_NOT_CONNECTED = 1171
    ALREADY_IN_STATE = 1177
    RECONNECT_REFUSED = 1178
    DATA_TOO_LARGE = 1195  # the Web SDK's code for a message over its size limit
    # room-disconnected causes
    DISCONNECTED_BY_MODERATOR = 2001  # docs/protocol/moderation.md
    UNEXPECTED_DISCONNECT = 2002
    CONFERENCE_EXPIRED = 2003  # settings.duration ran out: the room ended for everyone
    NORMAL_DISCONNECT = 2006
    # server refusals of the token handshake
    TOKEN_INVALID = 4101
    TOKEN_EXPIRED = 4102
    TOKEN_ALREADY_USED = 4103
    TOKEN_WRONG_ROOM = 4104
    ROOM_NOT_FOUND = 4105
    ROOM_FULL = 4106
    ALREADY_JOINED = 4107
    REJOIN_REFUSED = 4119
    # server refusals of requests after joining
    NOT_JOINED = 4120
    MALFORMED_REQUEST = 4121
    MEDIA_NEGOTIATION_FAILED = 4122
    RECIPIENT_NOT_FOUND = 4140  # sendDataStreamToRoom: a client id not in the room
    # moderator requests refused (EnableX's codes; docs/protocol/moderation.md)
    HARD_MUTE_NOT_PERMITTED = 5001
    HARD_UNMUTE_NOT_PERMITTED = 5002
    RECORD_NOT_PERMITTED = 5007
    RECORDING_ALREADY_ON = 5034
    ROOM_ALREADY_HARD_MUTED = 5038
    ROOM_NOT_HARD_MUTED = 5039
    DROP_NOT_PERMITTED = 5116
    # the waiting room (knock / wait_for_moderator)
    AWAIT_DENIED = 4130  # a moderator turned the waiting participant away
    AWAIT_TIMED_OUT = 4131  # the client gave up waiting (room_info.wait_timeout_s)


class ProtocolError(Exception):
    """A message that does not fit the protocol. ``str()`` names what is wrong and where."""

    def __init__(self, message: str, code: int = ErrorCode.INVALID_PARAMETERS) -> None:
        super().__init__(message)
        self.code = int(code)


class LocalProtocolError(ProtocolError):
    """We tried to send something invalid: a bug on our side."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something invalid; ``code`` is what to answer it with."""


class TokenError(ProtocolError):
    """A token that cannot be used: garbage, truncated, expired, reused, signed wrongly."""

    def __init__(self, message: str, code: int = ErrorCode.TOKEN_INVALID) -> None:
        super().__init__(message, code)
