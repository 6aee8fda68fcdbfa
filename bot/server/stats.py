"""What the server counts for its metrics: joins, refusals, verdicts and failures.

Plain counters on the server's own objects (no module-level state: many servers share a
process); :mod:`.metrics` reads them at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger(__name__)

FailureHook = Callable[[str, BaseException], None]


@dataclass(kw_only=True)
class SignallingStats:
    """Counts for the server's metrics (:mod:`.metrics` reads them at scrape time)."""

    joins: int = 0
    """Tokens accepted: joins and rejoins."""
    refusals: dict[int, int] = field(default_factory=dict)
    """Tokens refused, by error code."""
    alerts: dict[str, int] = field(default_factory=lambda: {"publisher": 0, "subscriber": 0})
    """Low-bandwidth verdicts sent, by leg (``publisher``: detector or injected)."""
    restores: int = 0
    """Restored verdicts sent."""
    data_messages: dict[str, int] = field(default_factory=dict)
    """Chat and user data messages relayed (``sendDataStreamToRoom`` accepted), by type."""
    data_bytes: dict[str, int] = field(default_factory=dict)
    """Their sizes (compact JSON, UTF-8), by type."""

    def refused(self, code: int) -> None:
        self.refusals[int(code)] = self.refusals.get(int(code), 0) + 1

    def data_relayed(self, kind: str, size: int) -> None:
        self.data_messages[kind] = self.data_messages.get(kind, 0) + 1
        self.data_bytes[kind] = self.data_bytes.get(kind, 0) + size


class Failures:
    """Unexpected exceptions the server survived, by where they happened.

    The owner's hook (pyee's ``error`` event, as a callable): whoever caught the exception
    logs it with its traceback, then :meth:`record` counts it (``enx_server_failures_total``)
    and tells every hook. A failing hook is logged, never raised into the server.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._hooks: list[FailureHook] = []

    def add_hook(self, hook: FailureHook) -> None:
        self._hooks.append(hook)

    def record(self, where: str, error: BaseException) -> None:
        self.counts[where] = self.counts.get(where, 0) + 1
        for hook in list(self._hooks):
            try:
                hook(where, error)
            except Exception:
                log.exception("failure_hook_failed", where=where)

    def total(self) -> int:
        return sum(self.counts.values())
