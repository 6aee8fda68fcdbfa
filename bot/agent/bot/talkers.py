"""The bot's ``active_talkers`` log line: one per change of who is in its active-talker list
or of their order (a flag such as ``videomuted`` changing alone is not a change of talkers).

With ``receive.subscribe: talkers`` the SDK follows the list (``EnxRtc(subscribe="talkers")``:
video for the listed streams, audio for the rest); this only says what the list is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Json = dict[str, Any]


class TalkerLog:
    """``on_active_talker_list`` of a bot; ``log()`` is the bot's logger as it is now."""

    def __init__(self, log: Callable[[], Any]) -> None:
        self._log = log
        self._last: list[Any] | None = None
        self.changes = 0

    def __call__(self, payload: Json) -> None:
        entries = [e for e in payload.get("activeList") or [] if isinstance(e, dict)]
        ids = [e.get("streamId") for e in entries]
        if ids == self._last:
            return
        self._last = ids
        self.changes += 1
        # the head of the list as the line's participant; an empty list names nobody
        head = {"user": entries[0].get("name"), "user_id": entries[0].get("clientId")} if entries else {}
        self._log().info(
            "active_talkers",
            **head,
            talkers=[e.get("name") for e in entries],
            stream_ids=ids,
            count=len(entries),
        )
