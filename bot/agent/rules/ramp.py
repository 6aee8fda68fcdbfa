"""When each bot of a swarm may start joining, and how long a failed join waits to retry.

Pure functions of the config and an index: no clock, no asyncio, so tests check the schedule
exactly. The runner turns :meth:`RampSchedule.due` into sleeps.

The ramp is defined over the *global* bot index (the bots of the config in order), so every
worker process or Kubernetes shard that runs a slice of the bots (``i % count == index``) keeps
its bots at their global times, and the slices together follow the configured rate and stages.

- ``rate`` is a token bucket holding one token, refilled ``rate`` times a second: joins start
  at most ``rate`` a second and never in a burst (``None``: no limit). :class:`Pacer` keeps that
  promise when the process falls behind its plan (a stalled loop, a slow token fetch).
- A stage ``{to: N, over: D}`` spreads the joins that bring the swarm to ``N`` bots evenly over
  ``D`` seconds (the first at once); ``{hold: D}`` waits. Bots left over after the last stage
  follow at ``rate``. Stages only ramp up: leaving is each bot's ``stay``.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: float | int | str, what: str) -> float:
    """Seconds from ``10``, ``2.5``, ``"10s"``, ``"500ms"``, ``"2m"`` or ``"1h"``.

    Raises ValueError naming ``what`` for anything else, negative numbers included."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a duration (10, 10s, 500ms, 2m), not {str(value).lower()}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"{what} must be a duration (10, 10s, 500ms, 2m), not {value!r}")
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"{what} must be 0 or more seconds, not {value!r}")
    return seconds


@dataclass(frozen=True)
class Stage:
    """A validated ramp stage: grow to ``to`` bots over ``seconds``, or (``to`` None) wait."""

    to: int | None
    seconds: float


class RampSchedule:
    """Start times (seconds from the swarm's start) of ``total`` bots under ``rate`` and ``stages``.

    Raises ValueError for a ramp that cannot be followed: a stage going past the number of bots
    or down, or asking for joins faster than ``rate``.
    """

    def __init__(self, total: int, rate: float | None = None, stages: Sequence[Stage] = ()) -> None:
        if total < 0:
            raise ValueError(f"a swarm of {total} bots is impossible")
        if rate is not None and not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"ramp rate must be more than 0 joins per second, not {rate}")
        self.total = total
        self.rate = rate
        self.stages = tuple(stages)
        self._due = self._plan()

    def due(self, index: int) -> float:
        """When bot ``index`` (0-based, global) may start joining, in seconds from the start."""
        return self._due[index]

    @property
    def duration(self) -> float:
        """When the last bot may start joining."""
        return self._due[-1] if self._due else 0.0

    def _plan(self) -> list[float]:
        gap = 0.0 if self.rate is None else 1.0 / self.rate
        due: list[float] = []
        t = 0.0  # when the current stage starts
        last = -math.inf  # when the last token was taken

        def take(at: float) -> None:
            nonlocal last
            last = max(at, last + gap)
            due.append(last)

        for n, stage in enumerate(self.stages):
            where = f"ramp stage {n + 1}"
            if stage.to is None:
                t = max(t, last) + stage.seconds
                continue
            start = len(due)
            if stage.to > self.total:
                raise ValueError(f"{where} ramps to {stage.to} bots, but the config has {self.total}")
            if stage.to < start:
                raise ValueError(
                    f"{where} ramps down to {stage.to} bots from {start}: stages only ramp up "
                    "(bots leave after their 'stay')"
                )
            joins = stage.to - start
            if joins and stage.seconds > 0 and self.rate is not None:
                wanted = joins / stage.seconds
                if wanted > self.rate * (1 + 1e-9) and joins > 1:
                    raise ValueError(
                        f"{where} asks for {joins} joins in {stage.seconds:g} s ({wanted:.3g}/s), "
                        f"faster than the ramp rate of {self.rate:g} joins/s: raise the rate or "
                        "lengthen the stage"
                    )
            for j in range(joins):
                take(t + stage.seconds * j / joins)
            t = max(t + stage.seconds, last)
        while len(due) < self.total:
            take(t)
        return due


class Pacer:
    """Keeps the planned gaps between a process's join starts when it falls behind the plan.

    A bot whose start comes late (a stalled event loop, a slow token request) would otherwise be
    followed at once by the next bot, which is on time: two joins in a burst, the thing a ramp
    rate promises never to do. Here each start is at least its planned gap after the previous
    one, so a late start delays the rest of the ramp instead; the delay is :attr:`slip`.
    """

    def __init__(self) -> None:
        self._planned = -math.inf  # the planned time of the latest start given out
        self._at = -math.inf  # and when it was let go
        self.slip = 0.0

    def start_at(self, planned: float, now: float) -> float:
        """When the start planned at ``planned`` may go, asked at ``now`` (same clock)."""
        # out of order (an earlier bot's token came later): still its planned distance apart
        gap = abs(planned - self._planned) if self._planned > -math.inf else 0.0
        at = max(now, planned, self._at + gap)
        self._planned, self._at = planned, at
        self.slip = at - planned
        return at


@dataclass(frozen=True)
class Backoff:
    """Waits between join attempts: ``first`` seconds, doubling up to ``most``, with jitter.

    Attempt ``n`` (1 for the first retry) waits a random time in ``[d/2, d]`` where
    ``d = min(most, first * 2**(n-1))``, so a swarm whose joins failed together does not
    retry together.
    """

    first: float = 1.0
    most: float = 30.0

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        d = min(self.most, self.first * 2.0 ** max(0, retry - 1))
        draw = rng.random() if rng is not None else random.random()
        return d / 2 + draw * d / 2
