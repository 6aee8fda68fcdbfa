"""Typed reads of JSON payloads that raise a RemoteProtocolError naming the event and field."""

from __future__ import annotations

from typing import Any

from .errors import ErrorCode, RemoteProtocolError

_MISSING = object()


class Fields:
    """Reads one payload; every error says ``<event>: field '<name>' ...``."""

    def __init__(self, payload: object, where: str) -> None:
        if not isinstance(payload, dict):
            raise RemoteProtocolError(
                f"{where}: payload must be an object, got {type(payload).__name__}",
                ErrorCode.MALFORMED_REQUEST,
            )
        self.payload: dict[str, Any] = payload
        self.where = where

    def _get(self, key: str, types: tuple[type, ...], default: Any, kind: str) -> Any:
        value = self.payload.get(key, _MISSING)
        if value is _MISSING or value is None:
            if default is _MISSING:
                raise RemoteProtocolError(
                    f"{self.where}: field '{key}' is missing", ErrorCode.MALFORMED_REQUEST
                )
            return default
        # bool is an int subclass: never accept it where a number is wanted
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise RemoteProtocolError(
                f"{self.where}: field '{key}' must be {kind}, got {type(value).__name__}",
                ErrorCode.MALFORMED_REQUEST,
            )
        return value

    def text(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, (str,), default, "a string")

    def flag(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, (bool,), default, "a boolean")

    def integer(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, (int,), default, "an integer")

    def number(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, (int, float), default, "a number")

    def mapping(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, (dict,), default, "an object")

    def array(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, (list,), default, "a list")

    def id(self, key: str, default: Any = _MISSING) -> Any:
        """Stream ids are numbers on the wire; accept numeric strings too (some SDKs send them)."""
        value = self.payload.get(key, _MISSING)
        if isinstance(value, str) and value.isdigit():
            return int(value)
        return self._get(key, (int,), default, "a stream id (integer)")
