"""Chat and custom data (EnableX Web SDK 2.3.16 ``sendMessage`` / ``sendUserData``).

Both directions in one place because they are one feature: the client asks the room to relay
(``sendDataStreamToRoom``, with an ack) and each recipient hears ``onDataStreamToRoom``. The
official client turns ``type: "chat"`` into ``message-received`` and anything else into
``user-data-received``, handing the app the whole relayed object. Sizes are the UTF-8 bytes of
the message as compact JSON (what travels), so the limits mean the same on both sides.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

from .._fields import Fields
from ..errors import ErrorCode, RemoteProtocolError
from .common import Json

DataType = Literal["chat", "user_data"]
DATA_TYPES: tuple[str, ...] = get_args(DataType)

KIB = 1024
CHAT_MAX_BYTES = 2048 * KIB
"""The SDK's hard cap for one message (``sendMessage``); the server refuses anything larger."""
USER_DATA_MAX_BYTES = 100 * KIB
"""The SDK's default cap for ``sendUserData`` (an ``EnxRtc`` option may raise it to the hard cap)."""
MAX_RECIPIENTS = 20_000
"""No room holds more participants (the REST ``participants`` setting's range)."""
MAX_CLIENT_ID_CHARS = 128
MAX_DEPTH = 64
"""Nesting a message may have: deeper is refused before anything recurses over it."""


def data_size(message: object) -> int:
    """UTF-8 bytes of ``message`` as compact JSON: what the limits are measured on."""
    return len(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace"))


def empty_message(value: object) -> bool:
    """What the official client's ``!msg`` refuses: null, "", false, 0."""
    return value is None or value == "" or value is False or (isinstance(value, int | float) and value == 0)


def _message(f: Fields, key: str) -> Any:
    """Any JSON value but an empty one: the SDK refuses ``!msg`` (null, "", false, 0)."""
    value = f.payload.get(key)
    if empty_message(value):
        raise RemoteProtocolError(
            f"{f.where}: field '{key}' is missing or empty", ErrorCode.MALFORMED_REQUEST
        )
    if nesting(value) > MAX_DEPTH:
        raise RemoteProtocolError(
            f"{f.where}: field '{key}' is nested more than {MAX_DEPTH} levels deep",
            ErrorCode.MALFORMED_REQUEST,
        )
    return value


def nesting(value: object) -> int:
    """How deep lists and objects nest in ``value`` (a scalar is 0), without recursing, and
    stopping as soon as ``MAX_DEPTH`` is passed."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth) for child in children if isinstance(child, dict | list | tuple))
    return deepest


def _clients(f: Fields, key: str) -> tuple[str, ...]:
    raw = f.array(key, [])
    if len(raw) > MAX_RECIPIENTS:
        raise RemoteProtocolError(
            f"{f.where}: field '{key}' lists {len(raw)} clients (at most {MAX_RECIPIENTS})",
            ErrorCode.MALFORMED_REQUEST,
        )
    out: dict[str, None] = {}
    for i, item in enumerate(raw):
        if not isinstance(item, str) or not item or len(item) > MAX_CLIENT_ID_CHARS:
            raise RemoteProtocolError(
                f"{f.where}: {key}[{i}] must be a client id (a non-empty string of at most "
                f"{MAX_CLIENT_ID_CHARS} characters)",
                ErrorCode.MALFORMED_REQUEST,
            )
        out[item] = None  # duplicates count once, order kept
    return tuple(out)


def _millis(value: float) -> int:
    return int(value) if math.isfinite(value) and abs(value) < 2**53 else 0


def _data_type(f: Fields) -> DataType:
    value = f.text("type")
    if value not in DATA_TYPES:
        raise RemoteProtocolError(
            f"{f.where}: field 'type' must be one of {', '.join(DATA_TYPES)}, got {value[:40]!r}",
            ErrorCode.MALFORMED_REQUEST,
        )
    return value  # type: ignore[no-any-return]


@dataclass(frozen=True, kw_only=True)
class SendData:
    """``sendDataStreamToRoom {msg, broadcast, clients, type}``: relay ``message`` to everyone
    else (``broadcast``) or to ``clients`` only. ``size`` is measured once, when decoded."""

    WIRE: ClassVar[str] = "sendDataStreamToRoom"

    message: Any
    broadcast: bool
    clients: tuple[str, ...] = ()
    type: DataType = "chat"
    size: int = field(default=0, compare=False)

    @classmethod
    def from_payload(cls, payload: object) -> SendData:
        f = Fields(payload, cls.WIRE)
        message = _message(f, "msg")
        broadcast = f.flag("broadcast")
        clients = _clients(f, "clients")
        if not broadcast and not clients:
            raise RemoteProtocolError(
                f"{cls.WIRE}: 'clients' must name at least one client when 'broadcast' is false",
                ErrorCode.MALFORMED_REQUEST,
            )
        return cls(
            message=message,
            broadcast=broadcast,
            clients=() if broadcast else clients,
            type=_data_type(f),
            size=data_size(message),
        )

    def to_payload(self) -> Json:
        return {
            "msg": self.message,
            "broadcast": self.broadcast,
            "clients": list(self.clients),
            "type": self.type,
        }


@dataclass(frozen=True, kw_only=True)
class DataReceived:
    """``onDataStreamToRoom {type, message, broadcast, sender, senderId, receipients?,
    timestamp}`` (``receipients``: EnableX's spelling, only on a directed message; ``timestamp``:
    ms since the epoch when the room relayed it)."""

    WIRE: ClassVar[str] = "onDataStreamToRoom"

    type: str
    message: Any
    broadcast: bool
    sender: str
    sender_id: str
    recipients: tuple[str, ...] | None = None
    timestamp: int = 0
    extra: Json = field(default_factory=dict)

    @property
    def chat(self) -> bool:
        return self.type == "chat"

    @classmethod
    def from_payload(cls, payload: object) -> DataReceived:
        f = Fields(payload, cls.WIRE)
        recipients = f.array("receipients", None)
        known = {"type", "message", "broadcast", "sender", "senderId", "receipients", "timestamp"}
        return cls(
            type=f.text("type", "user_data"),
            message=f.payload.get("message"),
            broadcast=f.flag("broadcast", False),
            sender=f.text("sender", ""),
            sender_id=f.text("senderId", ""),
            recipients=None if recipients is None else tuple(str(r) for r in recipients),
            timestamp=_millis(f.number("timestamp", 0)),
            extra={k: v for k, v in f.payload.items() if k not in known},
        )

    def to_payload(self) -> Json:
        out: Json = {
            **self.extra,
            "type": self.type,
            "message": self.message,
            "broadcast": self.broadcast,
            "sender": self.sender,
            "senderId": self.sender_id,
            "timestamp": self.timestamp,
        }
        if self.recipients is not None:
            out["receipients"] = list(self.recipients)
        return out
