"""A swarm survives its room server being killed and restarted: how many bots come back, how fast.

Method: the room server in its own process with a data directory (``enx-bot serve --data-dir``,
so a restarted server knows its rooms and the bots' tokens); ``enx-bot run configs/swarm.yaml``
with ``--bots`` publishing bots (rooms of 10, 20 joins/s); once all published and ``--settle``
seconds passed, SIGKILL to the server, a new one on the same port and data directory after
``--down`` seconds. From the bots' own log lines: how many logged ``connection_lost`` and how
many ``user_reconnect_success``, and per bot the time from the first loss to its success. Then
the server's room views: bots present and delivering video again.

    .venv/bin/python bench/swarm_restart.py [--bots 200] [--down 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from single_bot import APP_ID, APP_KEY, ROOT, free_port
from swarm import Server, log_events


def _at(event: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00"))


async def main(a: argparse.Namespace) -> None:
    data = tempfile.mkdtemp(prefix="enx-restart-")
    port = free_port()
    extra = ["--data-dir", data]
    server = Server(extra, port=port)
    await server.__aenter__()
    out_path = Path(tempfile.mkdtemp(prefix="enx-restart-log-")) / "swarm.jsonl"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ENX_")},
        "ENX_API_URL": server.api,
        "ENX_APP_ID": APP_ID,
        "ENX_APP_KEY": APP_KEY,
        "ENX_BOTS": str(a.bots),
        "ENX_RAMP": "20",
        "ENX_ROOMS": str(max(1, a.bots // 10)),
        "ENX_BOTS_PER_ROOM": "10",
    }
    with out_path.open("wb") as out:
        swarm = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", "configs/swarm.yaml", "--log-format", "json",
            cwd=ROOT, env=env, stdout=out, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    try:
        for _ in range(int(a.bots / 20 + 60)):
            await asyncio.sleep(1)
            if sum(1 for e in log_events(out_path) if e.get("event") == "published_stream") >= a.bots:
                break
        await asyncio.sleep(a.settle)
        assert server.proc is not None
        server.proc.kill()
        await server.__aexit__(None, None, None)  # reaps it, closes the HTTP session
        await asyncio.sleep(a.down)
        server = Server(extra, port=port)
        await server.__aenter__()
        await asyncio.sleep(a.wait)
        events = log_events(out_path)
        lost = {e["bot"]: _at(e) for e in reversed(events) if e.get("event") == "connection_lost"}
        back = {e["bot"]: _at(e) for e in events if e.get("event") == "user_reconnect_success"}
        gave_up = sum(1 for e in events if e.get("event") in ("session_lost", "room_error"))
        delays = sorted((back[b] - lost[b]).total_seconds() for b in back if b in lost)
        room_ids = await server.rooms()
        views = await server.views(room_ids)
        present = sum(len(v["participants"]) for v in views)
        await asyncio.sleep(2)
        later = await server.views(room_ids)

        def video(vs: list[dict[str, Any]]) -> dict[str, int]:
            return {
                p["clientId"]: sum(s["received"]["video"]["packets"] for s in p["streams"])
                for v in vs
                for p in v["participants"]
            }

        v0, v1 = video(views), video(later)
        delivering = sum(1 for c, n in v1.items() if n > v0.get(c, 0))
        print(f"{a.bots} bots; server killed, back after {a.down:g} s (+ its start-up)")
        print(f"connection_lost: {len(lost)}, user_reconnect_success: {len(back)}, gave up: {gave_up}")
        if delays:
            print(f"loss -> reconnected: median {statistics.median(delays):.2f} s, max {delays[-1]:.2f} s")
        print(f"in the server's rooms afterwards: {present}; delivering video again: {delivering}")
    finally:
        if swarm.returncode is None:
            swarm.terminate()
            await swarm.wait()
        await server.__aexit__(None, None, None)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bots", type=int, default=200)
    ap.add_argument("--down", type=float, default=1.0, help="seconds between the kill and the restart")
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--wait", type=float, default=20.0, help="seconds to let the bots come back")
    asyncio.run(main(ap.parse_args()))
