"""The quality probe's cost and detection latency (issue 12).

CPU: the room server in its own process (``enx-bot serve``); ``--publishers`` publishing bots
(audio + 640x360@15 VP8, shared media) in another; then, per mode, a fresh child process of this
script joins ``--viewers`` EnxRtc monitors that subscribe to every stream through the agent's
:class:`Receiver` (``stats_interval_s: 2``, each stats payload judged as the agent does) and
measures its own CPU (``time.process_time``, every thread) over ``--window`` s after
``--settle``; the modes run interleaved ``--repeat`` times and the least of each is reported.
Modes: ``discard`` (today's monitor: ``DiscardSink`` on the lean intake),
``cheap`` (``receive.quality`` without decoding), ``decode`` (``decode_every_s: 2`` and
``decode_audio: true``). 100% = one core.

Latency: one publisher whose synthetic sources this process controls, one monitor (the
defaults, but ``hold_s: 1`` so trials are short: the hold only delays the *clearing* event);
``--trials`` times each: pause the video until ``video_frozen``, make it black until
``video_black``, switch the tone to digital silence until ``audio_silent``; the time from the
fault to the event's log line, median and max.

    .venv/bin/python bench/quality.py [--publishers 2] [--viewers 5] [--window 15] [--repeat 2] [--trials 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from single_bot import APP_ID, ROOT, free_port, terminate
from viewers import PUBLISHERS_YAML

from bot.agent.bot.tokens import basic_auth

APP_KEY = "bench-quality-key-0123456789abcdef"
"""The room server wants 32 bytes or more (the other benches' key predates that check)."""

MODES: dict[str, dict[str, Any] | None] = {
    "discard": None,
    "cheap": {},
    "decode": {"decode_every_s": 2, "decode_audio": True},
}


async def _token(
    http: aiohttp.ClientSession, api: str, room: str, name: str, role: str = "participant"
) -> str:
    async with http.post(
        f"{api}/rooms/{room}/tokens", json={"name": name, "role": role, "user_ref": name}
    ) as r:
        return str((await r.json())["token"])


def _receiver(quality: dict[str, Any] | None, rtc_ref: list[Any]) -> Any:
    from bot.agent.bot.receive import Receiver
    from bot.agent.config import parse_config

    receive: dict[str, Any] = {"subscribe": "all", "stats_interval_s": 2}
    if quality is not None:
        receive["quality"] = quality
    cfg = parse_config({"token": "t", "bots": [{"name": "m", "receive": receive}]}, {}).bots[0].receive
    import structlog

    return Receiver(
        cfg,
        lambda: structlog.get_logger("bench"),
        users=lambda: rtc_ref[0].get_user_list() if rtc_ref else [],
    )


async def cpu_child(api: str, room: str, count: int, mode: str, settle: float, window: float) -> None:
    from bot.agent.logs import configure_logging
    from bot.rtc import EnxRtc

    configure_logging("json", "warning", stream=sys.stderr)
    if os.environ.get("ENX_BENCH_TICK_S"):  # an experiment: what the probe's ticker costs
        import bot.agent.quality.probe as probe

        probe.TICK_S = float(os.environ["ENX_BENCH_TICK_S"])
    rtcs = []
    receivers = []
    async with aiohttp.ClientSession(headers=basic_auth(APP_ID, APP_KEY)) as http:
        for i in range(count):
            token = await _token(http, api, room, f"mon-{i}", "viewer")
            ref: list[Any] = []
            receiver = _receiver(MODES[mode], ref)
            rtc = EnxRtc(label=f"mon-{i}", subscribe="all", sink_factory=receiver, stats_interval_s=2)
            ref.append(rtc)
            rtc.on_stats = receiver.log_stats
            await rtc.join_room(token, {"audio": False, "video": False})
            rtcs.append(rtc)
            receivers.append(receiver)
    await asyncio.sleep(settle)
    c0, t0 = time.process_time(), time.monotonic()
    await asyncio.sleep(window)
    c1, t1 = time.process_time(), time.monotonic()
    streams = 0
    for rtc in rtcs:
        streams += len((await rtc.stats())["subscriptions"])
    decode_s = sum(
        j.reading.decode_s for r in receivers if r.quality is not None for j in r.quality.judges.values()
    )
    print(json.dumps({"cpu_pct": 100 * (c1 - c0) / (t1 - t0), "streams": streams, "decode_s": decode_s}))
    for rtc in rtcs:
        await rtc.disconnect()
    for r in receivers:
        if r.quality is not None:
            await r.quality.aclose()


async def latency_child(api: str, room: str, trials: int) -> None:
    import structlog

    from bot.agent.logs import configure_logging
    from bot.media import SyntheticVideoTrack, ToneAudioTrack
    from bot.rtc import EnxRtc

    configure_logging("json", "warning", stream=sys.stderr)
    seen: list[tuple[str, float]] = []

    def keep(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
        seen.append((str(event["event"]), time.monotonic()))
        raise structlog.DropEvent

    structlog.configure(processors=[keep])
    async with aiohttp.ClientSession(headers=basic_auth(APP_ID, APP_KEY)) as http:
        video, audio = SyntheticVideoTrack(640, 360, 15), ToneAudioTrack()
        pub = EnxRtc(label="alice", audio_track=audio, video_track=video)
        await pub.join_room(
            await _token(http, api, room, "alice"), {"audio": True, "video": True, "name": "alice"}
        )
        ref: list[Any] = []
        receiver = _receiver({"decode_every_s": 2, "decode_audio": True, "hold_s": 1}, ref)
        mon = EnxRtc(label="mon", subscribe="all", sink_factory=receiver, stats_interval_s=2)
        ref.append(mon)
        mon.on_stats = receiver.log_stats
        await mon.join_room(await _token(http, api, room, "mon"), {"audio": False, "video": False})
    await asyncio.sleep(5)

    async def until(name: str, after: float, within: float = 20) -> float:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for event, at in seen:
                if event == name and at >= after:
                    return at
            await asyncio.sleep(0.01)
        raise TimeoutError(name)

    faults: dict[str, tuple[str, str, Any, Any]] = {
        "freeze": ("video_frozen", "video_resumed", lambda: setattr(video, "paused", True),
                   lambda: setattr(video, "paused", False)),
        "black": ("video_black", "video_unblack", lambda: setattr(video, "black", True),
                  lambda: setattr(video, "black", False)),
        "silence": ("audio_silent", "audio_resumed", lambda: setattr(audio, "silent", True),
                    lambda: setattr(audio, "silent", False)),
    }  # fmt: skip
    results: dict[str, list[float]] = {k: [] for k in faults}
    for _ in range(trials):
        for name, (raised, cleared, on, off) in faults.items():
            t = time.monotonic()
            on()
            results[name].append(await until(raised, t) - t)
            t = time.monotonic()
            off()
            await until(cleared, t)
            await asyncio.sleep(0.5)
    print(json.dumps(results))
    await mon.disconnect()
    await pub.disconnect()
    if receiver.quality is not None:
        await receiver.quality.aclose()


async def _server() -> tuple[asyncio.subprocess.Process, str, str]:
    port = free_port()
    api = f"http://127.0.0.1:{port}/video/v2"
    env = {**os.environ, "ENX_DATA_DIR": ":memory:"}
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", "--port", str(port), "--app-id", APP_ID, "--app-key", APP_KEY,
        "--log-level", "warning", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    async with aiohttp.ClientSession(headers=basic_auth(APP_ID, APP_KEY)) as http:
        for _ in range(100):
            try:
                async with http.post(f"{api}/rooms", json={"name": "quality"}) as r:
                    return server, api, str((await r.json())["room"]["room_id"])
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    raise RuntimeError("the room server did not start")


async def _child(*args: str) -> dict[str, Any]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await child.communicate()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def main(a: argparse.Namespace) -> None:
    server, api, room = await _server()
    publishers = None
    config = Path(f"/tmp/enx-bench-quality-{os.getpid()}.yaml")
    try:
        if a.window > 0:
            text = PUBLISHERS_YAML.format(
                api=api, app_id=APP_ID, app_key=APP_KEY, room=room, count=a.publishers
            )
            await asyncio.to_thread(config.write_text, text)
            publishers = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", str(config), "--log-level", "warning", cwd=ROOT,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            await asyncio.sleep(3)
            print(f"{a.publishers} publishers, {a.viewers} monitors subscribing to all ({a.window:.0f} s)")
            modes = a.modes.split(",")
            runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
            for _ in range(a.repeat):  # interleaved, the least of each: the machine is shared
                for mode in modes:
                    r = await _child(
                        "--role", "cpu", "--api", api, "--room", room, "--viewers", str(a.viewers),
                        "--mode", mode, "--settle", str(a.settle), "--window", str(a.window),
                    )  # fmt: skip
                    r["per"] = r["cpu_pct"] / max(1, r["streams"])
                    runs[mode].append(r)
            base = min(r["per"] for r in runs["discard"])
            for mode, results in runs.items():
                r = min(results, key=lambda x: float(x["per"]))
                per = r["per"]
                decode = 100 * r["decode_s"] / max(1, r["streams"]) / (a.window + a.settle + 2)
                print(
                    f"{mode:<8} {per:.3f}% of a core per stream ({r['cpu_pct']:.1f}% for {r['streams']}), "
                    f"{100 * (per / base - 1):+.0f}% ({per - base:+.3f} points) vs discard; "
                    f"decoding itself ~{decode:.3f}% per stream; runs {[round(x['per'], 3) for x in results]}"
                )
            publishers.terminate()
            await publishers.wait()
            publishers = None
        if a.trials > 0:
            async with (
                aiohttp.ClientSession(headers=basic_auth(APP_ID, APP_KEY)) as http,
                http.post(f"{api}/rooms", json={"name": "latency"}) as resp,
            ):
                room = str((await resp.json())["room"]["room_id"])
            r = await _child("--role", "latency", "--api", api, "--room", room, "--trials", str(a.trials))
            for name, values in r.items():
                ms = sorted(v * 1000 for v in values)
                median = statistics.median(ms)
                print(f"{name:<8} detected in median {median:.0f} ms, max {ms[-1]:.0f} ms ({len(ms)} trials)")
    finally:
        await terminate(publishers, server)
        await asyncio.to_thread(config.unlink, missing_ok=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--viewers", type=int, default=5)
    ap.add_argument("--settle", type=float, default=4.0)
    ap.add_argument("--window", type=float, default=15.0)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--role", default="main")
    ap.add_argument("--api")
    ap.add_argument("--room")
    ap.add_argument("--mode", default="discard")
    args = ap.parse_args()
    if args.role == "cpu" and os.environ.get("ENX_BENCH_PROFILE"):  # where the time goes, per mode
        import cProfile

        out = f"{os.environ['ENX_BENCH_PROFILE']}.{args.mode}"
        run = cpu_child(args.api, args.room, args.viewers, args.mode, args.settle, args.window)
        cProfile.runctx("asyncio.run(run)", globals(), {"run": run, "asyncio": asyncio}, out)
    elif args.role == "cpu":
        asyncio.run(cpu_child(args.api, args.room, args.viewers, args.mode, args.settle, args.window))
    elif args.role == "latency":
        asyncio.run(latency_child(args.api, args.room, args.trials))
    else:
        asyncio.run(main(args))
