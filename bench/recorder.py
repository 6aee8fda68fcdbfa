"""Recorder bot: CPU per recorded stream and time to first frame, on loopback.

Method: the room server runs in its own process (``enx-bot serve``); N publishers (``enx-bot run``
of a one-bot config: audio + 640x360@15 VP8, synthetic, shared media) join first; then the
recorder (``enx-bot run configs/recorder.yaml``, subscribe all, ``sink: record``) joins and
records every stream to WebM without decoding. CPU is the recorder process's user+system time
from /proc over ``--window`` seconds after ``--settle`` seconds, divided by wall time (100% =
one core), then divided by N. Time to first frame is the recorder's own ``first_frame`` log
(ms from the start of the subscription to the first video frame reaching the sink).

    .venv/bin/python bench/recorder.py [--streams 1 4] [--window 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from single_bot import APP_ID, APP_KEY, ROOT, cpu_seconds, free_port

from bot.agent.bot.tokens import basic_auth

AUTH = basic_auth(APP_ID, APP_KEY)


async def spawn(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def events(proc: asyncio.subprocess.Process, sink: list[dict]) -> None:
    assert proc.stdout is not None
    async for line in proc.stdout:
        if line.startswith(b"{"):
            sink.append(json.loads(line))


async def run(streams: int, window: float, settle: float) -> tuple[float, list[float]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENX_")}
    port = free_port()
    server = await spawn("serve", "--port", str(port), "--app-id", APP_ID, "--app-key", APP_KEY,
                         "--data-dir", ":memory:", "--log-format", "json", env=env)  # fmt: skip
    api = f"http://127.0.0.1:{port}/video/v2"
    procs: list[asyncio.subprocess.Process] = []
    tmp = tempfile.TemporaryDirectory()
    try:
        async with aiohttp.ClientSession(headers=AUTH) as http:
            for _ in range(100):
                try:
                    async with http.post(f"{api}/rooms", json={"name": "rec"}) as r:
                        room_id = (await r.json())["room"]["room_id"]
                    break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)

            async def token(name: str) -> str:
                async with http.post(
                    f"{api}/rooms/{room_id}/tokens", json={"name": name, "role": "participant"}
                ) as r:
                    return str((await r.json())["token"])

            pub_cfg = Path(tmp.name) / "pub.yaml"
            pub_cfg.write_text("token: ${ENX_TOKEN}\nbots:\n  - name: ${ENX_NAME}\n")
            for i in range(streams):
                e = {**env, "ENX_TOKEN": await token(f"pub{i}"), "ENX_NAME": f"pub{i}"}
                procs.append(await spawn("run", str(pub_cfg), "--log-format", "json", env=e))
            await asyncio.sleep(3)
            rec_env = {**env, "ENX_TOKEN": await token("rec"), "ENX_RECORD_DIR": tmp.name}
            rec = await spawn("run", "configs/recorder.yaml", "--log-format", "json", env=rec_env)
            procs.append(rec)
            log: list[dict] = []
            reader = asyncio.create_task(events(rec, log))
            await asyncio.sleep(settle)
            c0, t0 = cpu_seconds(rec.pid), time.monotonic()
            await asyncio.sleep(window)
            cpu = 100 * (cpu_seconds(rec.pid) - c0) / (time.monotonic() - t0)
            firsts = [
                float(e["ms"]) for e in log if e.get("event") == "first_frame" and e.get("kind") == "video"
            ]
            reader.cancel()
            return cpu / streams, firsts
    finally:
        for p in [*procs, server]:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        for p in [*procs, server]:
            await p.wait()
        tmp.cleanup()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--settle", type=float, default=5.0)
    a = ap.parse_args()
    for n in a.streams:
        per, firsts = await run(n, a.window, a.settle)
        ttff = f"median {statistics.median(firsts):.0f} ms, max {max(firsts):.0f} ms" if firsts else "none"
        print(
            f"streams {n}: recorder CPU per recorded stream {per:.2f}% of a core; first video frame: {ttff}"
        )


if __name__ == "__main__":
    asyncio.run(main())
