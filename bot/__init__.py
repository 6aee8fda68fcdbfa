"""enx-bot: a headless EnableX room participant, its client SDK and a local room server.

Used as a library, ``bot`` prints nothing of its own. Its structlog lines go to the standard
``logging`` module under the ``bot.*`` loggers, which have a ``NullHandler``: they show up only
once the application configures logging (``logging.basicConfig(level=logging.INFO)``), or
follow the application's own ``structlog.configure`` (ours steps aside when structlog is
already configured, and a later configure replaces it). ``enx-bot`` itself configures logging
in its entry point (:func:`bot.agent.configure_logging`).
"""

from __future__ import annotations

import logging

import structlog

logging.getLogger("bot").addHandler(logging.NullHandler())

if not structlog.is_configured():
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,  # before any work: a silent library costs nothing
            structlog.contextvars.merge_contextvars,
            structlog.processors.format_exc_info,
            structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
