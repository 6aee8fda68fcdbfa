"""A tiny EnxRtc driver for fault tests that run the bot in another process (a network
namespace): joins with ``$ENX_TOKEN``, prints one JSON line per callback on stdout, stays
until its room is left or ``--stay`` seconds pass, then leaves.

    ENX_TOKEN=... python tests/rtc_probe.py --room-info '{"timeout_interval": 10}' --stay 30

Each line: ``{"t": <monotonic s>, "event": <callback without on_>, ...payload fields}`` (the
bulky room fields dropped); ``{"event": "ready"}`` once ``join_room`` returned, ``{"event":
"exit", "cause": ...}`` at the end. stdout is line-buffered JSON only; the SDK's own log
lines (debug and up) go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bot.rtc import CALLBACK_NAMES, EnxRtc

BULKY = ("users", "streams", "room", "me")


def emit(event: str, payload: dict[str, Any] | None = None) -> None:
    fields = {k: v for k, v in (payload or {}).items() if k not in BULKY}
    print(json.dumps({"t": round(time.monotonic(), 3), "event": event, **fields}, default=str), flush=True)


async def main(args: argparse.Namespace) -> int:
    rtc = EnxRtc(label="probe")
    for name in CALLBACK_NAMES:
        setattr(rtc, name, lambda payload, name=name: emit(name.removeprefix("on_"), payload))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await rtc.join_room(os.environ["ENX_TOKEN"], json.loads(args.local_info), json.loads(args.room_info))
    emit("ready", {"clientId": rtc.client_id})
    gone = asyncio.ensure_future(rtc.wait_disconnected())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({gone, stopped}, timeout=args.stay, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    await rtc.disconnect()
    emit("exit", await rtc.wait_disconnected())
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--local-info", default='{"audio": true, "video": true}')
    parser.add_argument("--room-info", default="{}")
    parser.add_argument("--stay", type=float, default=60.0)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    structlog.configure(
        processors=[structlog.processors.TimeStamper(fmt="iso"), structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    raise SystemExit(asyncio.run(main(parser.parse_args())))
