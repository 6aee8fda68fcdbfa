"""CPU of receive-only bots: per received stream, on the lean intake or on aiortc's full path.

Method: the room server in its own process (``enx-bot serve``); ``--publishers`` publishing bots
(audio + 640x360@15 VP8, shared media) in another (``enx-bot run``); then, for each mode, a
fresh child process of this script joins ``--viewers`` EnxRtc viewers that subscribe to every
stream with the default sink (``DiscardSink``: nothing decoded) and measures its own CPU
(``time.process_time``, every thread) over ``--window`` seconds after ``--settle``. lean = the
SDK's default (the lean intake counts what the discarding sink never looks at); full = aiortc's
whole receive path (jitter buffer, NACKs, frames handed to the sink). 100% = one core.

    .venv/bin/python bench/viewers.py [--publishers 2] [--viewers 20] [--window 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from single_bot import APP_ID, APP_KEY, ROOT, free_port, terminate

from bot.agent.bot.tokens import basic_auth

PUBLISHERS_YAML = """\
api_url: {api}
app_id: {app_id}
app_key: {app_key}
room_id: {room}
bots:
  - name: pub-{{i}}
    count: {count}
"""


async def viewers(api: str, room: str, count: int, lean: bool, settle: float, window: float) -> None:
    """The child: join the viewers, measure, print one JSON line."""
    from bot.agent.logs import configure_logging
    from bot.rtc import EnxRtc

    configure_logging("json", "warning", stream=sys.stderr)
    rtcs = []
    async with aiohttp.ClientSession(headers=basic_auth(APP_ID, APP_KEY)) as http:
        for i in range(count):
            async with http.post(
                f"{api}/rooms/{room}/tokens",
                json={"name": f"view-{i}", "role": "viewer", "user_ref": f"v{i}"},
            ) as r:
                token = (await r.json())["token"]
            rtc = EnxRtc(label=f"view-{i}", subscribe="all")
            rtc._subscriber.lean = lean
            await rtc.join_room(token, {"audio": False, "video": False})
            rtcs.append(rtc)
    await asyncio.sleep(settle)

    async def received() -> tuple[int, int]:
        streams = packets = 0
        for rtc in rtcs:
            for sub in (await rtc.stats())["subscriptions"]:
                streams += 1
                packets += sum(sub[k]["packetsReceived"] or 0 for k in ("audio", "video") if k in sub)
        return streams, packets

    _, p0 = await received()
    c0, t0 = time.process_time(), time.monotonic()
    await asyncio.sleep(window)
    c1, t1 = time.process_time(), time.monotonic()
    streams, p1 = await received()
    lean_packets = sum(
        leg.intake.lean_packets
        for rtc in rtcs
        for sub in rtc._subscriber.legs.values()
        if (leg := sub.leg) is not None and leg.intake is not None
    )
    print(
        json.dumps(
            {
                "cpu_pct": 100 * (c1 - c0) / (t1 - t0),
                "streams": streams,
                "packets_per_s": (p1 - p0) / (t1 - t0),
                "lean_packets": lean_packets,
            }
        ),
        flush=True,
    )
    for rtc in rtcs:
        await rtc.disconnect()


async def main(a: argparse.Namespace) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}/video/v2"
    env = {**os.environ, "ENX_DATA_DIR": ":memory:"}
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", "--port", str(port), "--app-id", APP_ID, "--app-key", APP_KEY,
        "--log-level", "warning", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    publishers = None
    config = Path(f"/tmp/enx-bench-viewers-{os.getpid()}.yaml")
    try:
        async with aiohttp.ClientSession(headers=basic_auth(APP_ID, APP_KEY)) as http:
            for _ in range(100):
                try:
                    async with http.post(f"{api}/rooms", json={"name": "viewers"}) as r:
                        room = (await r.json())["room"]["room_id"]
                    break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
        text = PUBLISHERS_YAML.format(api=api, app_id=APP_ID, app_key=APP_KEY, room=room, count=a.publishers)
        await asyncio.to_thread(config.write_text, text)
        publishers = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", str(config), "--log-level", "warning", cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await asyncio.sleep(3)
        print(f"{a.publishers} publishers, {a.viewers} viewers subscribing to all ({a.window:.0f} s window)")
        for mode in ("lean", "full"):
            child = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--role", "viewers", "--api", api, "--room", room,
                "--viewers", str(a.viewers), "--lean", "1" if mode == "lean" else "0",
                "--settle", str(a.settle), "--window", str(a.window),
                cwd=ROOT, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _ = await child.communicate()
            r = json.loads(out.decode().strip().splitlines()[-1])
            per = r["cpu_pct"] / max(1, r["streams"])
            print(
                f"{mode:<5} CPU {r['cpu_pct']:5.1f}% for {r['streams']} received streams: "
                f"{per:.3f}% per stream ({r['packets_per_s']:.0f} RTP packets/s, "
                f"{r['lean_packets']} on the lean intake)"
            )
    finally:
        await terminate(publishers, server)
        await asyncio.to_thread(config.unlink, missing_ok=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--viewers", type=int, default=20)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--window", type=float, default=15.0)
    ap.add_argument("--role", default="main")
    ap.add_argument("--api")
    ap.add_argument("--room")
    ap.add_argument("--lean", type=int, default=1)
    args = ap.parse_args()
    if args.role == "viewers":
        asyncio.run(viewers(args.api, args.room, args.viewers, bool(args.lean), args.settle, args.window))
    else:
        asyncio.run(main(args))
