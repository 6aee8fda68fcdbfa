"""Join latency and CPU of one publishing bot, on loopback.

Method: start the room server (`enx-bot serve`) in its own process, create a room over REST,
then run N times `enx-bot run configs/bot.yaml` (audio + 640x360@15 VP8 video) with a minted
token. Join latency is read from the bot's own JSON log lines (`room_connected.join_ms`,
`published_stream.publish_ms`, both measured from the call to join_room). CPU is the bot
process's user+system time from /proc over a 20 s window that starts 3 s after
`published_stream`, divided by wall time (100% = one core).

    .venv/bin/python bench/single_bot.py [--runs 5] [--cpu-window 20]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import statistics
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
APP_ID, APP_KEY = "bench", "bench-key-0123456789abcdef-0123456789"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bot_command(name: str, *, profile: Path | None = None, sample: Path | None = None) -> list[str]:
    """``python -m bot``, or under ``cpu_sampler.py`` (``sample``: ``DIR/name.txt``, CPU time) or
    cProfile (``profile``: ``DIR/name.prof``, wall clock: read epoll's tottime as idle)."""
    if sample is not None:
        sample.mkdir(parents=True, exist_ok=True)
        sampler = str(Path(__file__).resolve().parent / "cpu_sampler.py")
        return [sys.executable, sampler, str(sample / f"{name}.txt"), "-m", "bot"]
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        return [sys.executable, "-m", "cProfile", "-o", str(profile / f"{name}.prof"), "-m", "bot"]
    return [sys.executable, "-m", "bot"]


async def terminate(*procs: asyncio.subprocess.Process | None) -> None:
    """SIGTERM each process still running and wait for it (a bench's ``finally``)."""
    for proc in procs:
        if proc is not None and proc.returncode is None:
            proc.terminate()
            await proc.wait()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def spawn(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def wait_event(proc: asyncio.subprocess.Process, name: str, within: float) -> dict:
    assert proc.stdout is not None
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(proc.stdout.readline(), deadline - time.monotonic())
        if not line:
            raise RuntimeError(f"process ended before {name}")
        if line.startswith(b"{"):
            event = json.loads(line)
            if event.get("event") == name:
                return event
    raise TimeoutError(name)


async def main(runs: int, cpu_window: float) -> None:
    port = free_port()
    server = await spawn(
        "serve", "--port", str(port), "--app-id", APP_ID, "--app-key", APP_KEY, "--log-format", "json"
    )
    api = f"http://127.0.0.1:{port}/video/v2"
    auth = {"Authorization": "Basic " + base64.b64encode(f"{APP_ID}:{APP_KEY}".encode()).decode()}
    joins, publishes, cpus = [], [], []
    try:
        async with aiohttp.ClientSession(headers=auth) as http:
            for _ in range(50):
                try:
                    async with http.post(f"{api}/rooms", json={"name": "bench"}) as r:
                        room_id = (await r.json())["room"]["room_id"]
                    break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            for i in range(runs):
                async with http.post(
                    f"{api}/rooms/{room_id}/tokens", json={"name": f"b{i}", "role": "participant"}
                ) as r:
                    token = (await r.json())["token"]
                bot = await spawn("run", "configs/bot.yaml", "--log-format", "json", env={"ENX_TOKEN": token})
                joins.append((await wait_event(bot, "room_connected", 30))["join_ms"])
                publishes.append((await wait_event(bot, "published_stream", 30))["publish_ms"])
                if i == 0 and cpu_window > 0:
                    await asyncio.sleep(3)
                    c0, t0 = cpu_seconds(bot.pid), time.monotonic()
                    await asyncio.sleep(cpu_window)
                    cpus.append(100 * (cpu_seconds(bot.pid) - c0) / (time.monotonic() - t0))
                bot.send_signal(signal.SIGTERM)
                await bot.wait()
    finally:
        server.send_signal(signal.SIGTERM)
        await server.wait()
    print(f"runs: {runs}")
    print(f"join_room -> room_connected  ms: median {statistics.median(joins):.1f}  all {joins}")
    print(f"join_room -> published_stream ms: median {statistics.median(publishes):.1f}  all {publishes}")
    if cpus:
        print(
            f"one publishing bot (audio + 640x360@15 VP8), process CPU over {cpu_window:.0f} s: "
            f"{cpus[0]:.1f}% of a core"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cpu-window", type=float, default=20.0)
    a = ap.parse_args()
    asyncio.run(main(a.runs, a.cpu_window))
