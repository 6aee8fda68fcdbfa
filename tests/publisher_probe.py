"""A publisher for the server's bandwidth tests: joins with ``$ENX_TOKEN`` through
``bot.rtc.EnxRtc`` and publishes synthetic media (``SyntheticVideoTrack`` 640x360 at 15 fps and a
440 Hz ``ToneAudioTrack``), without the agent. It keeps sending video whatever the room says.

    ENX_TOKEN=... python tests/publisher_probe.py --stay 60

stdout: one JSON line per event, ``{"t": <monotonic s>, "event": <name>, ...}``: every SDK
callback (``room_bandwidth_alert`` / ``room_bandwidth_restored`` carry the ``publisher-bw`` msg
as received, ``bandwidth_updated`` the raw ``{id, msg}`` of other ``bandwidthEvents``), then
``{"event": "ready"}`` once joined, ``{"event": "exit"}`` at the end. SIGTERM leaves the room.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bot.media import SyntheticVideoTrack, ToneAudioTrack
from bot.rtc import CALLBACK_NAMES, EnxRtc

BULKY = ("users", "streams", "room", "me")


def emit(event: str, payload: Any = None) -> None:
    fields: dict[str, Any] = {}
    if isinstance(payload, dict):
        fields = {k: v for k, v in payload.items() if k not in BULKY}
    elif payload is not None:
        fields = {"payload": payload}
    line = {"t": round(time.monotonic(), 3), "event": event, **fields}
    print(json.dumps(line, default=str), flush=True)


async def main(args: argparse.Namespace) -> int:
    rtc = EnxRtc(
        audio_track=ToneAudioTrack(440.0),
        video_track=SyntheticVideoTrack(args.width, args.height, args.fps, label="probe"),
        label="publisher-probe",
    )
    for name in CALLBACK_NAMES:
        setattr(rtc, name, lambda payload, name=name: emit(name.removeprefix("on_"), payload))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    local_info = {"audio": True, "video": True, "name": "probe", "maxVideoBW": args.max_video_bw}
    await rtc.join_room(os.environ["ENX_TOKEN"], local_info, {"allow_reconnect": False})
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
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--max-video-bw", type=int, default=1000)
    parser.add_argument("--stay", type=float, default=60.0)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    raise SystemExit(asyncio.run(main(parser.parse_args())))
