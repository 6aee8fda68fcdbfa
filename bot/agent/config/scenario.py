"""A bot's scenario: a timeline of actions (``scenario:`` in a bot entry or a variant).

Each step runs once (``at``) or repeatedly (``every``), at a time or a range of times
(``10s..20s``: a moment drawn per bot from the run's seeded RNG). Times count from the bot's
first join and go on across its rejoins. Steps run one at a time in the order they fall due; a
``wait_for`` holds the timeline until its condition holds (or its ``timeout``), and the steps due
meanwhile follow as soon as it ends.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

from ..rules.ramp import parse_duration

Action = Literal[
    "mute_audio",
    "unmute_audio",
    "mute_video",
    "unmute_video",
    "audio_only",
    "video_on",
    "chat",
    "user_data",
    "subscribe",
    "unsubscribe",
    "switch_media",
    "leave",
    "rejoin",
    "wait_for",
]
ACTIONS: tuple[str, ...] = Action.__args__  # type: ignore[attr-defined]
MAX_STEPS = 100
DEFAULT_WAIT_S = 60.0

# which optional keys each action takes (anything else given is a mistake worth saying)
_KEYS: dict[str, frozenset[str]] = {
    "chat": frozenset({"text", "to"}),
    "user_data": frozenset({"data", "to"}),
    "subscribe": frozenset({"users"}),
    "unsubscribe": frozenset({"users"}),
    "wait_for": frozenset({"participants", "text", "timeout"}),
    "switch_media": frozenset({"file"}),
}


def parse_range(value: float | int | str, what: str) -> tuple[float, float]:
    """``10``, ``"10s"`` or ``"10s..20s"`` as ``(low, high)`` seconds; ValueError names ``what``."""
    if isinstance(value, str) and ".." in value:
        low_text, _, high_text = value.partition("..")
        low = parse_duration(low_text.strip(), what)
        high = parse_duration(high_text.strip(), what)
        if high < low:
            raise ValueError(f"{what} {value!r} is an impossible range: its end comes before its start")
        return low, high
    seconds = parse_duration(value, what)
    return seconds, seconds


@dataclass(frozen=True, kw_only=True)
class ScenarioStep:
    do: Action
    at: float | str | None = None
    """Once, this long after the bot first joined (``10s``, or a range ``10s..20s``)."""
    every: float | str | None = None
    """Again and again, this long apart (a range: drawn anew each time); the first time after one period."""
    times: int | None = None
    """With ``every``: at most this many times."""
    text: str | None = None
    """``chat``: the message (``{name}`` is the bot's name); ``wait_for``: a chat text to hear."""
    data: Any = None
    """``user_data``: any JSON value."""
    to: list[str] | None = None
    """``chat``/``user_data``: participants (names or client ids); none: the whole room."""
    users: list[str] | None = None
    """``subscribe``/``unsubscribe``: whose streams (names); none: every stream."""
    participants: int | None = None
    """``wait_for``: at least this many participants in the room, ourselves included."""
    timeout: float | str | None = None
    """``wait_for``: give up after this long (default 60 s): the action fails, the timeline goes on."""
    file: str | None = None
    """``switch_media``: the media file to publish from now on (checked like ``media.file``)."""

    def __post_init__(self) -> None:
        if (self.at is None) == (self.every is None):
            raise ValueError(f"a {self.do} step needs one of 'at' or 'every'")
        if self.at is not None:
            parse_range(self.at, "at")
        if self.every is not None:
            low, _ = parse_range(self.every, "every")
            if low <= 0:
                raise ValueError(f"every {self.every!r} must be more than 0 seconds apart")
        if self.times is not None and (self.every is None or self.times < 1):
            raise ValueError("'times' goes with 'every' and must be 1 or more")
        allowed = _KEYS.get(self.do, frozenset())
        for key in ("text", "data", "to", "users", "participants", "timeout", "file"):
            if getattr(self, key) is not None and key not in allowed:
                raise ValueError(f"'{key}' is not a setting of {self.do}")
        if self.do == "chat" and not self.text:
            raise ValueError("a chat step needs a 'text'")
        if self.do == "switch_media" and not self.file:
            raise ValueError("a switch_media step needs a 'file'")
        if self.do == "user_data" and self.data is None:
            raise ValueError("a user_data step needs 'data'")
        if self.do == "wait_for":
            if self.participants is None and self.text is None:
                raise ValueError("wait_for needs 'participants' (a number) or 'text' (a chat text to hear)")
            if self.participants is not None and self.participants < 1:
                raise ValueError("wait_for participants must be 1 or more")
            if self.timeout is not None:
                parse_duration(self.timeout, "timeout")
        if self.do == "leave" and self.every is not None:
            raise ValueError("leave happens once: use 'at'")

    @functools.cached_property
    def wait_s(self) -> float:
        return DEFAULT_WAIT_S if self.timeout is None else parse_duration(self.timeout, "timeout")

    @functools.cached_property
    def window_s(self) -> tuple[float, float]:
        """``(low, high)`` seconds of ``at`` or ``every``: each moment is drawn from it."""
        return parse_range(self.at if self.at is not None else self.every, "time")  # type: ignore[arg-type]


def check_scenario(steps: tuple[ScenarioStep, ...]) -> None:
    if len(steps) > MAX_STEPS:
        raise ValueError(f"scenario has {len(steps)} steps: at most {MAX_STEPS}")
