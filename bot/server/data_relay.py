"""Chat and custom data: ``sendDataStreamToRoom`` relayed as ``onDataStreamToRoom``.

The room server only relays: it checks the request (decoded by :mod:`bot.proto`, so garbage
never gets here), its size, and that every named recipient is in the room, then sends one
``onDataStreamToRoom`` per recipient and acks ``{result: 0}``. A broadcast goes to everyone
but the sender; a directed message to the listed clients only (the sender too, if it listed
itself). A refusal changes nothing and reaches nobody: 1195 over the size cap, 4140 a client
id not in the room. Recipients that are away (reconnection grace) count as in the room; what
is sent to them is dropped, as every event is while they are away.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from bot.proto import CHAT_MAX_BYTES, Ack, DataReceived, ErrorCode, SendData

from .errors import RequestRefused
from .outbox import Outbox
from .presence import Handler, Presences, Session
from .stats import SignallingStats

log = structlog.get_logger(__name__)

Json = dict[str, Any]

MAX_DATA_BYTES = CHAT_MAX_BYTES
"""The largest message relayed (the SDK's hard cap), chat and user data alike."""
MAX_SOCKET_MESSAGE_BYTES = 4 * 1024 * 1024
"""Engine.IO's limit for one incoming message: room for a message of the cap with its envelope
(non-ASCII text escaped); beyond it Engine.IO closes the socket before anything is decoded."""


class DataRelay:
    """The handler of ``sendDataStreamToRoom`` (see the module)."""

    def __init__(self, *, presences: Presences, outbox: Outbox, stats: SignallingStats) -> None:
        self.presences = presences
        self.outbox = outbox
        self.stats = stats

    def handlers(self) -> dict[type, Handler]:
        return {SendData: self._on_send_data}

    async def _on_send_data(self, session: Session, event: SendData) -> Json:
        seat = self.presences.seat(session)
        if seat is None:
            raise RequestRefused("not in a room", ErrorCode.NOT_JOINED)
        room, sender = seat
        if event.size > MAX_DATA_BYTES:
            raise RequestRefused(
                f"{SendData.WIRE}: {event.size:,} bytes is over the {MAX_DATA_BYTES // 1024:,} kB limit",
                ErrorCode.DATA_TOO_LARGE,
            )
        if event.broadcast:
            recipients = [p for p in room.participants.values() if p.client_id != sender.client_id]
        else:
            unknown = [c for c in event.clients if c not in room.participants]
            if unknown:
                shown = ", ".join(repr(c[:40]) for c in unknown[:5])
                more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
                raise RequestRefused(
                    f"{SendData.WIRE}: not in the room: {shown}{more}", ErrorCode.RECIPIENT_NOT_FOUND
                )
            recipients = [room.participants[c] for c in event.clients]
        relayed = DataReceived(
            type=event.type,
            message=event.message,
            broadcast=event.broadcast,
            sender=sender.name,
            sender_id=sender.client_id,
            recipients=None if event.broadcast else event.clients,
            timestamp=int(time.time() * 1000),
        )
        await self.outbox.send_all(recipients, relayed)
        self.stats.data_relayed(event.type, event.size)
        log.info(
            "data_relayed",
            room=room.room_id,
            client_id=sender.client_id,
            type=event.type,
            size=event.size,
            broadcast=event.broadcast,
            recipients=len(recipients),
        )
        return Ack().to_payload()
