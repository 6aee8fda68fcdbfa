"""A soak: bots that keep joining, publishing, chatting and leaving, watched for leaks.

Method:

1. Start the room server in its own process (``enx-bot serve``, state in memory) and create a room.
2. Start ``enx-bot run configs/soak.yaml`` against it with ``--bots`` bots: each rejoins every
   ``--rejoin`` (a range: ``1m..3m``) with a fresh token, chats every 20-40 s, publishes
   320x180@10 video and audio; the agent serves ``/metrics`` on a free port.
3. Every ``--every`` seconds sample, for the swarm's process and the server's: RSS and PSS
   (``/proc/PID/smaps_rollup``), open file descriptors (``/proc/PID/fd``), OS threads
   (``/proc/PID/status``) and unfinished asyncio tasks (``enx_asyncio_tasks`` from the agent's
   ``/metrics``, ``enx_server_asyncio_tasks`` from the server's), plus the participants in the room.
4. After ``--minutes``: SIGTERM to the swarm; sample the server once the room is empty.
5. Report, per measure, the least-squares slope per hour over the samples after ``--warmup``
   minutes (the first minutes grow caches and pools), and for the server its figures with no bot
   against its figures before the first bot joined (leaked fds/threads/tasks).

    .venv/bin/python bench/soak.py --minutes 30 --bots 50 [--every 30] [--warmup 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from single_bot import APP_ID, APP_KEY, ROOT, free_port
from swarm import Server, memory_kib

MEASURES = ("rss_mib", "pss_mib", "fds", "threads", "tasks")


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def threads(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def gauge(http: aiohttp.ClientSession, url: str, name: str) -> float | None:
    try:
        async with http.get(url) as r:
            text = await r.text()
    except aiohttp.ClientError:
        return None
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else None


async def sample(pid: int, http: aiohttp.ClientSession, metrics: str, tasks_name: str) -> dict[str, float]:
    rss, pss = memory_kib(pid)
    tasks = await gauge(http, metrics, tasks_name)
    return {
        "rss_mib": round(rss / 1024, 1),
        "pss_mib": round(pss / 1024, 1),
        "fds": fds(pid),
        "threads": threads(pid),
        "tasks": -1 if tasks is None else tasks,
    }


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value), per hour."""
    if len(points) < 3:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return None
    return round(3600 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var, 2)


async def main(a: argparse.Namespace) -> dict[str, Any]:
    metrics_port = free_port()
    async with Server() as server:
        assert server.http is not None
        server_metrics = f"http://127.0.0.1:{server.port}/metrics"
        async with server.http.post(f"{server.api}/rooms", json={"name": "soak"}) as r:
            room_id = (await r.json())["room"]["room_id"]
        assert server.proc is not None
        before = await sample(server.proc.pid, server.http, server_metrics, "enx_server_asyncio_tasks")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ENX_")},
            "ENX_API_URL": server.api,
            "ENX_APP_ID": APP_ID,
            "ENX_APP_KEY": APP_KEY,
            "ENX_ROOM_ID": room_id,
            "ENX_BOTS": str(a.bots),
            "ENX_REJOIN_EVERY": a.rejoin,
            "ENX_METRICS_PORT": str(metrics_port),
            "ENX_SEED": str(a.seed),
        }
        swarm = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", str(ROOT / "configs" / "soak.yaml"),
            "--log-format", "json", "--log-level", "warning",
            cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        agent_metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        samples: list[dict[str, Any]] = []
        t0 = time.monotonic()
        end = t0 + a.minutes * 60
        while time.monotonic() < end and swarm.returncode is None:
            t = round(time.monotonic() - t0, 1)
            bots = await sample(swarm.pid, server.http, agent_metrics, "enx_asyncio_tasks")
            srv = await sample(server.proc.pid, server.http, server_metrics, "enx_server_asyncio_tasks")
            (view,) = await server.views([room_id])
            row = {
                "t_s": t,
                "participants": len(view.get("participants") or []),
                "swarm": bots,
                "server": srv,
            }
            samples.append(row)
            print(json.dumps(row), flush=True)
            await asyncio.sleep(max(0.0, min(a.every, end - time.monotonic())))
        swarm.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(swarm.wait(), 30)
        for _ in range(100):  # the room empties as the bots leave
            (view,) = await server.views([room_id])
            if not view.get("participants"):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)
        after = await sample(server.proc.pid, server.http, server_metrics, "enx_server_asyncio_tasks")
    warm = [s for s in samples if s["t_s"] >= a.warmup * 60]
    slopes = {
        who: {m: slope_per_hour([(s["t_s"], s[who][m]) for s in warm]) for m in MEASURES}
        for who in ("swarm", "server")
    }
    result = {
        "bots": a.bots,
        "minutes": a.minutes,
        "rejoin": a.rejoin,
        "samples": len(samples),
        "swarm_exit_code": code,
        "slope_per_hour_after_warmup": slopes,
        "server_before": before,
        "server_after_all_left": after,
        "server_leaked": {m: round(after[m] - before[m], 1) for m in ("fds", "threads", "tasks")},
        "first": samples[0] if samples else None,
        "last": samples[-1] if samples else None,
    }
    return {**result, "series": samples}


def report(result: dict[str, Any], out: str | None) -> None:
    series = result.pop("series")
    print(json.dumps(result, indent=2))
    if out:
        Path(out).write_text(json.dumps({**result, "series": series}, indent=2) + "\n")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--bots", type=int, default=50)
    p.add_argument("--every", type=float, default=30, help="seconds between samples")
    p.add_argument("--warmup", type=float, default=5, help="minutes left out of the slopes")
    p.add_argument("--rejoin", default="1m..3m", help="each bot rejoins this often (a range)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", help="write the result and the samples here")
    args = p.parse_args()
    report(asyncio.run(main(args)), args.json)
