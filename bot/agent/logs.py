"""structlog set-up, called once by the entry point (never at import time).

JSON lines on stdout when stdout is not a TTY (or ``json`` asked), readable console lines on
a TTY. aiortc/aiohttp/socketio stdlib logs go through the same processors at WARNING.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
NOISY = ("aiortc", "aioice", "aiohttp.access", "socketio", "engineio", "av")


def configure_logging(
    fmt: Literal["auto", "json", "console"] = "auto", level: str = "info", stream: object = None
) -> None:
    out = stream or sys.stdout
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
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)  # type: ignore[arg-type]
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info if use_json else _identity,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS.get(level, logging.INFO))
    for name in NOISY:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def _identity(_: object, __: str, event_dict: structlog.types.EventDict) -> structlog.types.EventDict:
    return event_dict
