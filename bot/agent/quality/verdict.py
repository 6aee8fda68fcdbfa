"""A condition judged with hysteresis: raised once bad for ``raise_after``, cleared only once
good for ``clear_after``. A stream flapping faster than ``clear_after`` stays raised: one event
pair for the whole episode, not one per flap."""

from __future__ import annotations

from typing import Literal

Change = Literal["raised", "cleared"]


class Verdict:
    def __init__(self, raise_after: float, clear_after: float) -> None:
        self.raise_after = raise_after
        self.clear_after = clear_after
        self.raised = False
        self.raised_at: float | None = None
        self._bad_since: float | None = None
        self._good_since: float | None = None

    def update(self, bad: bool, now: float) -> Change | None:
        """The condition as of ``now``; returns the change it made, if any."""
        if bad:
            self._good_since = None
            if self._bad_since is None:
                self._bad_since = now
            if not self.raised and now - self._bad_since >= self.raise_after:
                self.raised = True
                self.raised_at = now
                return "raised"
            return None
        self._bad_since = None
        if self._good_since is None:
            self._good_since = now
        if self.raised and now - self._good_since >= self.clear_after:
            self.raised = False
            return "cleared"
        return None

    def reset(self) -> bool:
        """Forget the condition (the publisher muted); True when it was raised."""
        was = self.raised
        self.raised = False
        self._bad_since = self._good_since = None
        return was
