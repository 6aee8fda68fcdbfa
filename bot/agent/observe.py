"""What a bot tells the operations side: one small protocol, many listeners.

The bot (and the runner) call these methods at the moments they already log; ``Metrics``
(Prometheus), ``RunRecorder`` (end-of-run reports) and ``Progress`` (a TTY status line) each
implement them, and :class:`Observers` fans one call out to all of them. Every method is cheap,
synchronous and never raises into the caller: a failing listener is logged and skipped.

States a bot goes through (``BotState``)::

    joining -> connected <-> reconnecting -> connected        (a fault survived)
                connected <-> audio-only                      (bandwidth fallback)
    joining -> failed      connected/reconnecting -> lost     connected/... -> left

A bot waiting for its ``join_delay`` has no state yet and is not expected in a room.
"""

from __future__ import annotations

import enum
from typing import Protocol, runtime_checkable

import structlog

log = structlog.get_logger(__name__)


class BotState(enum.StrEnum):
    JOINING = "joining"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    AUDIO_ONLY = "audio-only"
    LOST = "lost"  # the session ended without being asked to
    FAILED = "failed"  # could not join
    LEFT = "left"  # left on purpose (stay over, signal): no longer expected in a room


IN_ROOM = frozenset({BotState.CONNECTED, BotState.AUDIO_ONLY})
DONE = frozenset({BotState.LEFT})


def as_state(state: str) -> BotState:
    """``BotState(state)`` that also accepts ``audio_only``; ValueError names the known states."""
    try:
        return BotState(state.replace("_", "-"))
    except ValueError:
        known = ", ".join(s.value for s in BotState)
        raise ValueError(f"unknown bot state {state!r}: one of {known}") from None


@runtime_checkable
class BotObserver(Protocol):
    def bot_state(self, bot: str, state: str) -> None:
        """``bot`` is now in ``state`` (a :class:`BotState` value)."""

    def join_latency(self, bot: str, seconds: float) -> None:
        """``bot`` joined, ``seconds`` after it started joining."""

    def reconnect(self, bot: str) -> None:
        """``bot`` started a reconnect attempt (``on_reconnect``)."""

    def bandwidth_alert(self, bot: str) -> None:
        """The room raised a bandwidth alert for ``bot`` (``on_room_bandwidth_alert``)."""

    def fallback(self, bot: str) -> None:
        """``bot`` fell back to audio only."""

    def media(
        self,
        bot: str,
        sent_bytes: int = 0,
        sent_packets: int = 0,
        recv_bytes: int = 0,
        recv_packets: int = 0,
        lost: int = 0,
    ) -> None:
        """``bot``'s media totals so far (cumulative, as WebRTC statistics report them). A total
        that goes down (a new peer connection after a reconnect) starts counting again from it."""

    def room_participants(self, room: str, n: int) -> None:
        """``room`` has ``n`` participants (ourselves included), as a bot in it last saw."""

    def outcome(self, bot: str, outcome: str, reason: str = "") -> None:
        """``bot`` ended: ``completed``, ``join_failed`` or ``lost`` (the runner's Outcome)."""


class NullObserver:
    """Does nothing: the default where no metrics, report or progress is asked for."""

    def bot_state(self, bot: str, state: str) -> None:
        pass

    def join_latency(self, bot: str, seconds: float) -> None:
        pass

    def reconnect(self, bot: str) -> None:
        pass

    def bandwidth_alert(self, bot: str) -> None:
        pass

    def fallback(self, bot: str) -> None:
        pass

    def media(
        self,
        bot: str,
        sent_bytes: int = 0,
        sent_packets: int = 0,
        recv_bytes: int = 0,
        recv_packets: int = 0,
        lost: int = 0,
    ) -> None:
        pass

    def room_participants(self, room: str, n: int) -> None:
        pass

    def outcome(self, bot: str, outcome: str, reason: str = "") -> None:
        pass


class Observers:
    """One call, every listener; a listener that raises is logged once per call and skipped."""

    def __init__(self, *observers: BotObserver) -> None:
        self.observers = list(observers)

    def add(self, observer: BotObserver) -> None:
        self.observers.append(observer)

    def _each(self, method: str, *args: object) -> None:
        for obs in self.observers:
            try:
                getattr(obs, method)(*args)
            except Exception:
                log.exception("observer_failed", observer=type(obs).__name__, method=method)

    def bot_state(self, bot: str, state: str) -> None:
        self._each("bot_state", bot, state)

    def join_latency(self, bot: str, seconds: float) -> None:
        self._each("join_latency", bot, seconds)

    def reconnect(self, bot: str) -> None:
        self._each("reconnect", bot)

    def bandwidth_alert(self, bot: str) -> None:
        self._each("bandwidth_alert", bot)

    def fallback(self, bot: str) -> None:
        self._each("fallback", bot)

    def media(
        self,
        bot: str,
        sent_bytes: int = 0,
        sent_packets: int = 0,
        recv_bytes: int = 0,
        recv_packets: int = 0,
        lost: int = 0,
    ) -> None:
        self._each("media", bot, sent_bytes, sent_packets, recv_bytes, recv_packets, lost)

    def room_participants(self, room: str, n: int) -> None:
        self._each("room_participants", room, n)

    def outcome(self, bot: str, outcome: str, reason: str = "") -> None:
        self._each("outcome", bot, outcome, reason)


class MediaTotals:
    """Turns cumulative per-bot totals into increments (restarting when a total goes down)."""

    FIELDS = ("sent_bytes", "sent_packets", "recv_bytes", "recv_packets", "lost")

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, ...]] = {}

    def delta(self, bot: str, totals: tuple[int, ...]) -> tuple[int, ...]:
        last = self._last.get(bot, (0,) * len(totals))
        self._last[bot] = totals
        return tuple(new - old if new >= old else new for new, old in zip(totals, last, strict=True))
