"""structlog set-up, called once by the entry point (never at import time).

JSON lines on stdout when stdout is not a TTY (or ``json`` asked), readable console lines on
a TTY. Every line has a constant ``event`` (the README's tables), so a log reader never parses
free text:

- our own lines: ``bot`` (agent lines), or ``component: "server"`` for the room server's lines
  (the embedded server runs in the bots' process; a ``bot`` bound in a context it inherited is
  dropped from its lines, it would name the wrong party);
- other libraries' records (aiortc, aiohttp, socketio, ... at WARNING): ``event:
  "library_log"`` with their text in ``message`` and their ``logger``;
- a library's traceback for a client's garbage (aiohttp's HTTP parser refused the request, or
  Engine.IO/Socket.IO could not decode a frame, with no frame of ours deeper than the decoder)
  becomes one ``client_protocol_error`` line with the ``error`` and no traceback. Any other
  traceback is a bug and stays.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from types import TracebackType
from typing import Any, Literal

import structlog
from aiohttp.http_exceptions import HttpProcessingError

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
NOISY = ("aiortc", "aioice", "aiohttp.access", "socketio", "engineio", "av")
SERVER_LOGGERS = "bot.server"
OUR_CODE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # .../bot/
# Where a client's bytes are decoded: an exception raised below one of these is the client's.
DECODERS = (
    os.sep + os.path.join("engineio", "packet.py"),
    os.sep + os.path.join("socketio", "packet.py"),
)
ERROR_TEXT_MAX = 200


def configure_logging(
    fmt: Literal["auto", "json", "console"] = "auto", level: str = "info", stream: object = None
) -> None:
    """Our lines go straight from structlog to the stream (one rendered line, one write): the
    stdlib path cost about 60 us a line, and a swarm logs thousands during its ramp. Calls below
    ``level`` return at once. Other libraries' stdlib records reach the same stream through a
    handler with the same processors (``foreign_record``)."""
    out: Any = stream or sys.stdout
    use_json = fmt == "json" or (fmt == "auto" and not getattr(out, "isatty", lambda: False)())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=getattr(out, "isatty", lambda: False)())
    )
    min_level = LEVELS.get(level, logging.INFO)
    lines = _Lines(out)
    structlog.configure(
        processors=[
            *shared,
            server_component,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info if use_json else _identity,
            renderer,
        ],
        logger_factory=lines.logger,
        wrapper_class=structlog.make_filtering_bound_logger(min_level),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, foreign_record],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info if use_json else _identity,
                renderer,
            ],
        )
    )
    handler.lock = lines.lock  # one lock for both writers: a line is never cut by another
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(min_level)
    for name in NOISY:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


class _Lines:
    """The stream our rendered lines are written to, and the lock it shares with the handler
    of other libraries' records."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.lock = threading.RLock()

    def logger(self, *args: Any) -> _LineLogger:
        return _LineLogger(str(args[0]) if args and args[0] else "", self)


class _LineLogger:
    """structlog's last stop: writes the rendered line. ``name`` is the ``get_logger`` name
    (``server_component`` reads it)."""

    __slots__ = ("_lines", "name")

    def __init__(self, name: str, lines: _Lines) -> None:
        self.name = name
        self._lines = lines

    def msg(self, message: str) -> None:
        lines = self._lines
        with lines.lock:
            lines.stream.write(message + "\n")
            lines.stream.flush()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def server_component(logger: Any, _: str, event_dict: structlog.types.EventDict) -> structlog.types.EventDict:
    """The room server's lines say so, and never carry a bot that only leaked in by context."""
    name = getattr(logger, "name", "") or ""
    if name == SERVER_LOGGERS or name.startswith(SERVER_LOGGERS + "."):
        event_dict.pop("bot", None)
        event_dict["component"] = "server"
    return event_dict


def foreign_record(_: Any, __: str, event_dict: structlog.types.EventDict) -> structlog.types.EventDict:
    """Another library's record as one line with a constant event (see the module docstring)."""
    record: logging.LogRecord | None = event_dict.get("_record")
    if record is None:
        return event_dict
    event_dict.pop("bot", None)  # context of whatever task the library logged from
    event_dict["logger"] = record.name
    event_dict["message"] = str(event_dict.get("event", ""))[:ERROR_TEXT_MAX]
    event_dict["event"] = "library_log"
    exc_info = event_dict.get("exc_info")
    if isinstance(exc_info, tuple) and exc_info[1] is not None and _clients_fault(exc_info[1], exc_info[2]):
        exc = exc_info[1]
        del event_dict["exc_info"]
        record.exc_info = None  # the formatter would render it again
        record.exc_text = None
        event_dict["event"] = "client_protocol_error"
        event_dict["error"] = f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_MAX]
        if event_dict.get("level") in ("error", "critical"):
            event_dict["level"] = "warning"  # the server survived it; the client was wrong
    return event_dict


def _clients_fault(exc: BaseException, tb: TracebackType | None) -> bool:
    if isinstance(exc, HttpProcessingError):  # aiohttp's parser: the request itself is bad
        return True
    decoding = False
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(DECODERS):
            decoding = True
        elif filename.startswith(OUR_CODE):
            decoding = False  # our code ran below the decoder: our bug, whatever came in
        tb = tb.tb_next
    return decoding


def _identity(_: object, __: str, event_dict: structlog.types.EventDict) -> structlog.types.EventDict:
    return event_dict
