"""Chat and custom data: Flutter ``sendMessage`` / ``sendUserData`` and what the room relays back.

Sending checks locally what the official client checks (in a room, ``local_info.data`` on, a
non-empty message, recipients when not broadcasting, the size limits) so a bad call never
reaches the wire; then ``sendDataStreamToRoom`` is acknowledged by the room. Every call ends in
exactly one ``on_acknowledged_send_data`` (the room's ack, or the local refusal in the same
shape) and, unless it succeeded, a :class:`~bot.rtc.RoomError` with that code: an app that
ignores the callback still cannot miss a failure. Received data (``onDataStreamToRoom``) fires
``on_message_received`` for chat and ``on_user_data_received`` for anything else, with the
whole relayed object, as the official client does.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.proto import (
    CHAT_MAX_BYTES,
    IN_ROOM,
    MAX_DEPTH,
    USER_DATA_MAX_BYTES,
    DataReceived,
    DataType,
    ErrorCode,
    SendData,
    data_size,
    empty_message,
    nesting,
)

from .callbacks import CallbackName, Json
from .errors import RoomError
from .session import Context

__all__ = ["CHAT_MAX_BYTES", "USER_DATA_MAX_BYTES", "RoomData", "deliver"]


class RoomData:
    """The sending half (the receiving half is :func:`deliver`, in the dispatcher's table)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    async def send(
        self,
        kind: DataType,
        message: object,
        broadcast: bool,
        recipients: Iterable[str] | str,
        max_bytes: int,
    ) -> Json:
        """Relay ``message``; returns the ack (``{result: 0, type}``) or raises RoomError."""
        try:
            request = self._request(kind, message, broadcast, recipients, max_bytes)
            session = self._ctx.session
            if session is None or self._ctx.phase.phase not in IN_ROOM:
                raise RoomError(ErrorCode.ROOM_NOT_CONNECTED, f"cannot send {kind}: not in a room")
            ack = await session.signalling.request(request)
        except RoomError as exc:
            await self._acknowledged({"result": exc.code, "msg": exc.msg, "type": kind})
            raise
        payload = {**ack.to_payload(), "type": kind}
        self._ctx.log.debug("data_acknowledged", type=kind, result=ack.result, size=request.size)
        await self._acknowledged(payload)
        if not ack.ok:
            raise RoomError(ack.result, f"the room refused the {kind}: {ack.msg or '?'}")
        return payload

    def _request(
        self,
        kind: DataType,
        message: object,
        broadcast: bool,
        recipients: Iterable[str] | str,
        max_bytes: int,
    ) -> SendData:
        def bad(why: str) -> RoomError:
            return RoomError(ErrorCode.INVALID_PARAMETERS, f"cannot send {kind}: {why}")

        if not self._ctx.local.data:
            raise bad("data is not enabled (join with local_info {'data': True})")
        if not isinstance(broadcast, bool):
            raise bad(f"broadcast must be True or False, not {type(broadcast).__name__}")
        if kind == "chat" and not isinstance(message, str):
            raise bad(f"a chat message is a string, not {type(message).__name__}")
        if empty_message(message):
            raise bad("the message is empty")
        clients = (recipients,) if isinstance(recipients, str) else tuple(recipients)
        if any(not isinstance(c, str) or not c for c in clients):
            raise bad("recipients are client ids (non-empty strings)")
        if not broadcast and not clients:
            raise bad("no recipients (give client ids, or broadcast=True)")
        if nesting(message) > MAX_DEPTH:
            raise bad(f"the message nests more than {MAX_DEPTH} levels deep")
        try:
            size = data_size(message)
        except (TypeError, ValueError) as exc:
            raise bad(f"the message is not JSON ({exc})") from None
        limit = min(max_bytes, CHAT_MAX_BYTES)
        if size > limit:
            raise RoomError(
                ErrorCode.DATA_TOO_LARGE,
                f"cannot send {kind}: {size:,} bytes is over the {limit // 1024:,} kB limit",
            )
        return SendData(
            message=message,
            broadcast=broadcast,
            clients=() if broadcast else tuple(dict.fromkeys(clients)),
            type=kind,
            size=size,
        )

    async def _acknowledged(self, payload: Json) -> None:
        await self._ctx.fire("on_acknowledged_send_data", payload)


async def deliver(ctx: Context, item: DataReceived) -> None:
    """The dispatcher's handler for ``onDataStreamToRoom``."""
    ctx.log.debug("data_received", type=item.type, other=item.sender_id)
    name: CallbackName = "on_message_received" if item.chat else "on_user_data_received"
    await ctx.fire(name, item.to_payload())
