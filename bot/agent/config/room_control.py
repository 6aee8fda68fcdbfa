"""A bot's part in the waiting room and lecture mode: what a moderator bot does with the
participants who knock and the floor requests it hears (``moderate``), and whether a
participant bot asks for the floor (``request_floor``, on ``BotConfig``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, kw_only=True)
class ModerateConfig:
    """``moderate: {awaited: approve|deny|none, floor: grant|deny|none}`` (moderators only):
    ``none`` (the default) leaves them waiting for someone else to decide."""

    awaited: Literal["approve", "deny", "none"] = "none"
    floor: Literal["grant", "deny", "none"] = "none"
