"""Who logs a room event that many bots of one process see: each of them, or the first.

In a room of N bots every join reaches the N-1 others, so a swarm filling a room logged
N²/2 ``user_connected`` and as many ``stream_added`` lines (45,000 of each for 300 bots, about
a third of the swarm's CPU during the ramp) to say N things. With ``log_room_events:
once_per_room`` (what ``auto`` becomes above :data:`AUTO_EVERY_BOT_MAX` bots in the process),
the first bot of the process to see a participant's or a stream's arrival or departure logs it
and the others stay silent; their callbacks, metrics and scenarios still run.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

Mode = Literal["auto", "every_bot", "once_per_room"]

AUTO_EVERY_BOT_MAX = 10
"""``auto``: every bot logs while the process runs at most this many (a demo, a monitor)."""
REMEMBERED = 50_000
"""Events remembered per process (oldest forgotten first): enough for rooms of thousands."""
OPPOSITE = {
    "user_connected": "user_disconnected",
    "user_disconnected": "user_connected",
    "stream_added": "stream_removed",
    "stream_removed": "stream_added",
}
"""Logging one forgets the other: a stream id comes back when its publisher reconnects."""


class RoomLog:
    """Shared by the bots of a process: :meth:`first` says whether this bot logs the event."""

    def __init__(self, mode: Mode = "every_bot", bots: int = 1) -> None:
        self.once = mode == "once_per_room" or (mode == "auto" and bots > AUTO_EVERY_BOT_MAX)
        self._seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    def first(self, room: str | None, event: str, subject: object) -> bool:
        """True when this bot should log ``event`` about ``subject`` (a clientId, a stream id)
        in ``room``: always when every bot logs, else for the first bot to report it."""
        if not self.once or room is None or subject is None:
            return True
        key = (room, event, str(subject))
        if key in self._seen:
            return False
        self._seen[key] = None
        if event in OPPOSITE:
            self._seen.pop((room, OPPOSITE[event], key[2]), None)
        if len(self._seen) > REMEMBERED:
            self._seen.popitem(last=False)
        return True


EVERY_BOT = RoomLog()
"""A bot on its own (no runner): it logs everything it sees."""
