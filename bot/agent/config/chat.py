"""``receive.reply``: a bot that answers chat (the config side of ``bot.agent.bot.chat``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

REPLY_PLACEHOLDERS = ("{sender}", "{message}")


@dataclass(frozen=True, kw_only=True)
class ReplyConfig:
    """Answer chat messages with ``text`` (``{sender}``: the sender's name, ``{message}``: their
    text, cut at 200 characters), sent to the sender only. ``answer``: ``broadcast`` (default)
    answers messages sent to the whole room, so two answering bots never answer each other's
    answers; ``all`` answers directed messages too. ``max``: at most that many answers per session
    (a loop between ``answer: all`` bots ends there)."""

    text: str
    answer: Literal["broadcast", "all"] = "broadcast"
    max: int = 1000

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError("receive.reply.text is empty: give the answer to send")
        if self.max < 1:
            raise ValueError(f"receive.reply.max must be 1 or more answers, not {self.max}")

    def render(self, sender: str, message: str) -> str:
        return self.text.replace("{sender}", sender).replace("{message}", message[:200])
