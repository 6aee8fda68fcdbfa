"""What a join costs in CPU, bot side and server side, and where it goes (issue 13, section 4).

Method:

1. Start the room server (``enx-bot serve``, state in memory) and create a room.
2. Start ``enx-bot run`` with ``--bots`` publishing bots (audio + 320x180@10 video, shared media)
   joining at ``--ramp`` joins/s, each staying until SIGTERM. With ``--profile`` both processes
   run under cProfile (slower: for attribution only, never for the figures).
3. CPU seconds (utime + stime, /proc) of both processes when the swarm logs its first
   ``joining`` (its start-up and imports are not a join), when the last bot logged
   ``published_stream``, and ``--window`` seconds later (the steady cost of the bots in the room).
4. Join CPU per bot = (CPU during the joins - the streaming during the joins) / bots, for each
   process, where the streaming is the steady CPU per bot-second times the bot-seconds streamed
   before the last bot published (each bot from its own ``published_stream``).
5. ``--repeat N``: the whole run N times (a fresh server and swarm each), medians reported.
6. ``--muted``: the bots join with audio and video muted. They still do all of a join (Socket.IO,
   token, the publish leg's offer, ICE, DTLS, the server's answer and ``ready``) but send no
   media, so almost nothing is subtracted: the least noisy figure on a busy box.

    .venv/bin/python bench/join_cost.py --bots 100 --ramp 20 [--per-room 10] [--window 10] [--repeat 3]
        [--profile DIR | --sample DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from single_bot import APP_ID, APP_KEY, ROOT, bot_command, cpu_seconds, free_port

CONFIG = """
api_url: {api}
app_id: {app_id}
app_key: {app_key}
{rooms}
ramp: {ramp}
bots:
  - name: join-{{i}}
    count: {bots}
    media: {{kind: synthetic, width: 320, height: 180, fps: 10}}
    local_info: {{audioMuted: {muted}, videoMuted: {muted}}}
"""


async def main(a: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    from bot.agent.bot.tokens import basic_auth

    profile = Path(a.profile) if a.profile else None  # bot_command makes the folders
    sample = Path(a.sample) if a.sample else None
    port = free_port()
    api = f"http://127.0.0.1:{port}/video/v2"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENX_")}
    server = await asyncio.create_subprocess_exec(
        *bot_command("server", profile=profile, sample=sample), "serve", "--port", str(port),
        "--app-id", APP_ID, "--app-key", APP_KEY, "--data-dir", ":memory:", "--log-level", "warning",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    async with aiohttp.ClientSession(headers=basic_auth(APP_ID, APP_KEY)) as http:
        for _ in range(200):
            try:
                async with http.post(f"{api}/rooms", json={"name": "join-cost"}) as r:
                    room_id = (await r.json())["room"]["room_id"]
                break
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
        else:
            raise RuntimeError("the room server did not start")
    config = Path(a.logs) / "join_cost.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    if a.per_room:  # rooms of that many, created through REST by the swarm
        rooms = f"rooms: {-(-a.bots // a.per_room)}\nbots_per_room: {a.per_room}"
    else:
        rooms = f"room_id: {room_id}"
    config.write_text(
        CONFIG.format(
            api=api,
            app_id=APP_ID,
            app_key=APP_KEY,
            rooms=rooms,
            ramp=a.ramp,
            bots=a.bots,
            muted="true" if a.muted else "false",
        )
    )
    swarm = await asyncio.create_subprocess_exec(
        *bot_command("bots", profile=profile, sample=sample), "run", str(config), "--log-format", "json",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert swarm.stdout is not None
    lines = (Path(a.logs) / "swarm.jsonl").open("wb")
    published = 0
    published_at: list[float] = []
    t_first = c_first = s_first = None
    while published < a.bots:
        line = await asyncio.wait_for(swarm.stdout.readline(), a.bots / a.ramp + 60)
        if not line:
            raise RuntimeError(f"the swarm ended after {published} published")
        if not line.startswith(b"{"):
            continue
        lines.write(line)
        event = json.loads(line).get("event")
        if event == "joining" and t_first is None:
            t_first, c_first, s_first = time.monotonic(), cpu_seconds(swarm.pid), cpu_seconds(server.pid)
            if sample:  # the samplers keep the joins only
                swarm.send_signal(signal.SIGUSR1)
                server.send_signal(signal.SIGUSR1)
        elif event == "published_stream":
            published += 1
            published_at.append(time.monotonic())
    t_done, c_done, s_done = time.monotonic(), cpu_seconds(swarm.pid), cpu_seconds(server.pid)
    if sample:
        swarm.send_signal(signal.SIGUSR2)
        server.send_signal(signal.SIGUSR2)

    async def drain_to_file() -> None:
        assert swarm.stdout is not None
        while line := await swarm.stdout.readline():
            lines.write(line)

    drain = asyncio.ensure_future(drain_to_file())
    await asyncio.sleep(a.window)
    t_end, c_end, s_end = time.monotonic(), cpu_seconds(swarm.pid), cpu_seconds(server.pid)
    swarm.send_signal(signal.SIGTERM)
    await asyncio.wait_for(swarm.wait(), 60)
    drain.cancel()
    lines.close()
    server.send_signal(signal.SIGTERM)
    await asyncio.wait_for(server.wait(), 60)
    assert t_first is not None and c_first is not None and s_first is not None
    joins_s = t_done - t_first
    steady_bots = (c_end - c_done) / (t_end - t_done)
    steady_server = (s_end - s_done) / (t_end - t_done)
    # the streaming during the joins: each bot from its published_stream on, at the steady rate
    streamed = sum(t_done - t for t in published_at) / a.bots  # bot-seconds / bots
    bot_ms = 1000 * ((c_done - c_first) - steady_bots * streamed) / a.bots
    server_ms = 1000 * ((s_done - s_first) - steady_server * streamed) / a.bots
    result: dict[str, Any] = {
        "bots": a.bots,
        "ramp": a.ramp,
        "per_room": a.per_room or a.bots,
        "muted": a.muted,
        "profiled": profile is not None or sample is not None,
        "joins_s": round(joins_s, 2),
        "join_cpu_ms_per_bot": {"bots": round(bot_ms, 2), "server": round(server_ms, 2)},
        "steady_cpu_pct": {"bots": round(100 * steady_bots, 1), "server": round(100 * steady_server, 1)},
    }
    if profile:
        for name in ("bots", "server"):
            stats = pstats.Stats(str(profile / f"{name}.prof"))
            stats.sort_stats("tottime").print_stats(25)
    return result


async def repeated(a: argparse.Namespace) -> dict[str, Any]:
    runs = [await main(a) for _ in range(a.repeat)]
    if len(runs) == 1:
        return runs[0]
    out = dict(runs[0])
    for key in ("join_cpu_ms_per_bot", "steady_cpu_pct"):
        out[key] = {
            side: round(statistics.median(r[key][side] for r in runs), 2) for side in ("bots", "server")
        }
    out["runs"] = [{k: r[k] for k in ("joins_s", "join_cpu_ms_per_bot", "steady_cpu_pct")} for r in runs]
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bots", type=int, default=100)
    p.add_argument("--ramp", type=float, default=20)
    p.add_argument("--window", type=float, default=10)
    p.add_argument("--per-room", type=int, default=0, help="rooms of this many bots (0: one room)")
    p.add_argument("--profile", metavar="DIR", help="run both under cProfile, .prof files here")
    p.add_argument("--sample", metavar="DIR", help="sample both processes' CPU during the joins")
    p.add_argument("--logs", default="/tmp/enx-join-cost")
    p.add_argument("--repeat", type=int, default=1, help="runs; medians reported")
    p.add_argument(
        "--muted",
        action="store_true",
        help="bots join muted: the whole join, next to no streaming to subtract",
    )
    print(json.dumps(asyncio.run(repeated(p.parse_args())), indent=2))
