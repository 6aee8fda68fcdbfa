"""What leaves the server on the sockets: events to one client, to a room, and closes.

Events for a participant are held until its ``room-connected`` is out and dropped while it is
away (a rejoin gets a fresh ``room-connected``), so no caller has to know its phase.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bot.proto import ServerEvent, encode

from .rooms import Participant, Room


class Outbox:
    """The sending half of the Socket.IO server, shared by joining, presence, requests and
    bandwidth events."""

    def __init__(self, sio: Any) -> None:
        self._sio = sio

    async def emit(self, sid: str, event: ServerEvent) -> None:
        if not sid:
            return
        name, args = encode(event)
        await self._sio.emit(name, args, to=sid)

    async def send(self, participant: Participant, event: ServerEvent) -> None:
        """To one participant, held until its room-connected is out, dropped while it is away."""
        if participant.away:
            return
        if participant.announced:
            await self.emit(participant.sid, event)
        else:
            participant.pending.append(event)

    async def send_all(self, participants: Iterable[Participant], event: ServerEvent) -> None:
        """As :meth:`send` to each, but encoded once for all (a chat broadcast in a big room)."""
        live: list[str] = []
        for participant in participants:
            if participant.away:
                continue
            if participant.announced and participant.sid:
                live.append(participant.sid)
            else:
                participant.pending.append(event)
        if live:
            name, args = encode(event)
            await self._sio.emit(name, args, to=live)

    async def broadcast(self, room: Room, event: ServerEvent, *, exclude: str) -> None:
        """To everyone in the room but ``exclude``: one encoding for all (a join in a room of N
        was N encodings and N emits, N² for the room to fill)."""
        await self.send_all(room.others(exclude), event)

    async def disconnect(self, sid: str) -> None:
        """Close this socket (Socket.IO close: the client sees a server disconnect)."""
        await self._sio.disconnect(sid)
