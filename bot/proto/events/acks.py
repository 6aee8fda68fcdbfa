"""Acknowledgements of client requests: ``{result: 0, ...}`` or ``{result: code, msg}``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._fields import Fields
from ..errors import ErrorCode, RemoteProtocolError
from .common import Json


@dataclass(frozen=True, kw_only=True)
class Ack:
    """An acknowledgement: ``{result: 0, ...}`` or ``{result: code, msg}``."""

    result: int = 0
    msg: str | None = None
    fields: Json = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.result == 0

    @classmethod
    def error(cls, code: int, msg: str) -> Ack:
        return cls(result=int(code), msg=msg)

    @classmethod
    def from_args(cls, request: str, args: tuple[Any, ...] | list[Any] | None) -> Ack:
        """Read an ack. Empty acks are success (``signaling_message`` acks are empty)."""
        if not args:
            return cls()
        first = args[0]
        if first is None:
            return cls(result=int(ErrorCode.INVALID_PARAMETERS), msg=f"{request}: refused (null ack)")
        if not isinstance(first, dict):
            raise RemoteProtocolError(f"ack of {request}: expected an object, got {type(first).__name__}")
        f = Fields(first, f"ack of {request}")
        result = first.get("result", 0)
        if isinstance(result, str) and result.lstrip("-").isdigit():
            result = int(result)
        if not isinstance(result, int) or isinstance(result, bool):
            raise RemoteProtocolError(f"ack of {request}: field 'result' must be an integer")
        msg = first.get("msg", first.get("error"))
        return cls(
            result=result,
            msg=msg if isinstance(msg, str) else (None if msg is None else str(msg)),
            fields={k: v for k, v in f.payload.items() if k not in {"result", "msg"}},
        )

    def to_payload(self) -> Json:
        out: Json = {"result": self.result, **self.fields}
        if self.msg is not None:
            out["msg"] = self.msg
        return out
