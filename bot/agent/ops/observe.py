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
from collections.abc import Callable, Mapping
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
    """What a bot and the runner report. The bodies do nothing, so a listener subclasses it (or
    :class:`NullObserver`) and overrides only what it counts."""

    def bot_state(self, bot: str, state: str) -> None:
        """``bot`` is now in ``state`` (a :class:`BotState` value)."""
        return None

    def join_latency(self, bot: str, seconds: float) -> None:
        """``bot`` joined, ``seconds`` after it started joining."""
        return None

    def reconnect(self, bot: str) -> None:
        """``bot`` started a reconnect attempt (``on_reconnect``)."""
        return None

    def bandwidth_alert(self, bot: str) -> None:
        """The room raised a bandwidth alert for ``bot`` (``on_room_bandwidth_alert``)."""
        return None

    def fallback(self, bot: str) -> None:
        """``bot`` fell back to audio only."""
        return None

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
        return None

    def data_message(self, bot: str, direction: str, kind: str, size: int) -> None:
        """``bot`` sent (``direction`` ``sent``, acknowledged by the room) or received
        (``received``) one chat (``kind`` ``chat``) or user data (``user_data``) message of
        ``size`` bytes."""
        return None

    def room_participants(self, room: str, n: int) -> None:
        """``room`` has ``n`` participants (ourselves included), as a bot in it last saw."""
        return None

    def scenario_action(self, bot: str, action: str, outcome: str) -> None:
        """``bot``'s scenario ran ``action``: ``ok``, ``failed`` or ``timeout``."""
        return None

    def bot_room(self, bot: str, room: str) -> None:
        """``bot`` joins ``room`` (said before its first join attempt)."""
        return None

    def outcome(self, bot: str, outcome: str, reason: str = "") -> None:
        """``bot`` ended: ``completed``, ``join_failed`` or ``lost`` (the runner's Outcome)."""
        return None

    def stream_quality(self, bot: str, stream: str, sample: Mapping[str, object]) -> None:
        """``bot``'s quality probe judged ``stream`` (``user#stream_id``): ``sample`` has
        ``mos``, ``video_score``, ``freezes``, ``frozen_s``, the flags ``frozen``, ``black``,
        ``silent``, ``picture_frozen``, ``degraded``, and ``ended`` on its last sample. Sent on
        every stats interval and whenever a flag changes."""
        return None

    def failure(self, where: str) -> None:
        """Something failed unexpectedly and was contained (logged with its traceback):
        ``callback:<name>`` (an app callback), ``bot_task`` (a bot's task), ``runner``,
        ``observer:<class>`` (a listener), ``rtc:<where>`` (the SDK's own background work:
        dispatcher, stats, reconnector, publisher, subscriber)."""
        return None


METHODS: tuple[str, ...] = tuple(
    name for name, value in vars(BotObserver).items() if callable(value) and not name.startswith("_")
)
"""The observer methods, in order: what :class:`Observers` fans out."""


class NullObserver(BotObserver):
    """Does nothing: the default where no metrics, report or progress is asked for."""


class Observers(NullObserver):
    """One call, every listener; a listener that raises is logged once per call and skipped
    (and counted through the others' ``failure("observer:<class>")``). Each method of
    :class:`BotObserver` is a fan-out, made from :data:`METHODS` below."""

    def __init__(self, *observers: BotObserver) -> None:
        self.observers = list(observers)

    def add(self, observer: BotObserver) -> None:
        self.observers.append(observer)

    def _each(self, method: str, *args: object, **kwargs: object) -> None:
        for obs in self.observers:
            try:
                getattr(obs, method)(*args, **kwargs)
            except Exception:
                log.exception("observer_failed", observer=type(obs).__name__, method=method)
                if method != "failure":
                    self._each("failure", f"observer:{type(obs).__name__}")


def _fan_out(method: str) -> Callable[..., None]:
    def call(self: Observers, *args: object, **kwargs: object) -> None:
        self._each(method, *args, **kwargs)

    call.__name__ = call.__qualname__ = method
    call.__doc__ = getattr(BotObserver, method).__doc__
    return call


for _method in METHODS:
    setattr(Observers, _method, _fan_out(_method))


def listening(events: BotObserver) -> bool:
    """Whether anybody hears ``events`` (not a NullObserver, not an empty Observers)."""
    if isinstance(events, Observers):
        return any(listening(obs) for obs in events.observers)
    return type(events) is not NullObserver


class MediaTotals:
    """Turns cumulative per-bot totals into increments (restarting when a total goes down)."""

    FIELDS = ("sent_bytes", "sent_packets", "recv_bytes", "recv_packets", "lost")

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, ...]] = {}

    def delta(self, bot: str, totals: tuple[int, ...]) -> tuple[int, ...]:
        last = self._last.get(bot, (0,) * len(totals))
        self._last[bot] = totals
        return tuple(new - old if new >= old else new for new, old in zip(totals, last, strict=True))
