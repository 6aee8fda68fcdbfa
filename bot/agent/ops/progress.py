"""A live status line for swarms on a terminal, that never tears a log line.

``Progress`` implements ``BotObserver`` and keeps one line at the bottom of the terminal::

    enx-bot  joined 45/100  joining 3  reconnecting 1  audio-only 2  failed 2  12s

(``failed``, ``reconnecting`` and ``audio-only`` always; ``joining``, ``lost`` and ``left`` when not 0)

It writes to ``stream`` (stderr by default) and only when that is a terminal (``TERM`` not
``dumb``); elsewhere it is silent and the log stream is untouched (JSON lines when stdout is
not a TTY). On a terminal, log lines and the status line share the screen: :meth:`attach`
wraps the root logger's handlers so that each record first erases the status line (carriage
return, erase line), then is written whole, then the status line is drawn again below it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from .observe import IN_ROOM, BotState, NullObserver, as_state

CLEAR = "\r\x1b[2K"
SHOWN = (
    BotState.JOINING,
    BotState.RECONNECTING,
    BotState.AUDIO_ONLY,
    BotState.FAILED,
    BotState.LOST,
    BotState.LEFT,
)
ALWAYS = frozenset({BotState.FAILED, BotState.RECONNECTING, BotState.AUDIO_ONLY})


def is_terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        tty = bool(isatty()) if callable(isatty) else False
    except ValueError:  # closed
        return False
    return tty and os.environ.get("TERM", "") != "dumb"


class _Redrawing(logging.Handler):
    """Wraps a handler: erase the status line, emit the record, draw the status line."""

    def __init__(self, inner: logging.Handler, progress: Progress) -> None:
        super().__init__(level=logging.NOTSET)
        self.inner = inner
        self.progress = progress

    def handle(self, record: logging.LogRecord) -> bool:
        with self.progress.lock:
            self.progress.clear()
            try:
                return bool(self.inner.handle(record))
            finally:
                self.progress.draw()

    def emit(self, record: logging.LogRecord) -> None:  # handle() does the work
        self.inner.emit(record)

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        self.inner.setFormatter(fmt)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()
        super().close()


class Progress(NullObserver):
    """Implements ``BotObserver``; ``async with Progress(target):`` redraws every ``interval``."""

    def __init__(
        self,
        target: int,
        stream: TextIO | None = None,
        *,
        enabled: bool | None = None,
        interval: float = 0.25,
        label: str = "enx-bot",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.stream: TextIO = stream if stream is not None else sys.stderr
        self.enabled = is_terminal(self.stream) if enabled is None else enabled
        self.interval = interval
        self.label = label
        self._clock = clock
        self._t0 = clock()
        self._states: dict[str, BotState] = {}
        self.reconnects = 0
        self.lock = threading.RLock()
        self._shown = ""  # what is on the status line now ("" = nothing)
        self._task: asyncio.Task[None] | None = None
        self._wrapped: list[tuple[logging.Logger, _Redrawing]] = []

    # ------------------------------------------------------------------ BotObserver

    def bot_state(self, bot: str, state: str) -> None:
        self._states[bot] = as_state(state)

    def reconnect(self, bot: str) -> None:
        self.reconnects += 1

    def outcome(self, bot: str, outcome: str, reason: str = "") -> None:
        end = {"join_failed": BotState.FAILED, "lost": BotState.LOST}.get(outcome, BotState.LEFT)
        if bot in self._states or end is not BotState.LEFT:
            self._states[bot] = end

    # ------------------------------------------------------------------ the line

    def render(self) -> str:
        """The status line's text (no control characters)."""
        counts = Counter(self._states.values())
        joined = sum(counts[s] for s in IN_ROOM)
        parts = [self.label, f"joined {joined}/{self.target}"]
        parts += [f"{s.value} {counts[s]}" for s in SHOWN if counts[s] or s in ALWAYS]
        parts.append(f"{self._clock() - self._t0:.0f}s")
        return "  ".join(parts)

    def _width(self) -> int:
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            columns = 0
        return columns or shutil.get_terminal_size().columns  # 0: a terminal that never said

    def clear(self) -> None:
        """Erase the status line (call with :attr:`lock` held when interleaving output)."""
        if self.enabled and self._shown:
            self._write(CLEAR)
            self._shown = ""

    def draw(self) -> None:
        """(Re)draw the status line, cut to the terminal's width so it never wraps."""
        if not self.enabled:
            return
        text = self.render()[: max(10, self._width() - 1)]
        with self.lock:
            self._write(CLEAR + text)
            self._shown = text

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: stop drawing
            self.enabled = False

    # ------------------------------------------------------------------ logging

    def attach(self, logger: logging.Logger | None = None) -> None:
        """Wrap ``logger``'s handlers (the root logger's by default) so log records and the
        status line take turns; :meth:`detach` (and :meth:`aclose`) put them back. Call it
        after logging is configured. Does nothing when disabled."""
        if not self.enabled:
            return
        lg = logger or logging.getLogger()
        for i, h in enumerate(list(lg.handlers)):
            if isinstance(h, _Redrawing):
                continue
            wrapper = _Redrawing(h, self)
            lg.handlers[i] = wrapper
            self._wrapped.append((lg, wrapper))

    def detach(self) -> None:
        for lg, wrapper in self._wrapped:
            lg.handlers = [wrapper.inner if h is wrapper else h for h in lg.handlers]
        self._wrapped.clear()

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Progress:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        if self.enabled and self._task is None:
            self.draw()
            self._task = asyncio.create_task(self._redraw(), name="progress:redraw")

    async def _redraw(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self.render() != self._shown:
                self.draw()

    async def aclose(self) -> None:
        """Idempotent: stop redrawing, leave the final status as an ordinary line."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            with self.lock:
                self.draw()
                self._write("\n")
                self._shown = ""
        self.detach()
