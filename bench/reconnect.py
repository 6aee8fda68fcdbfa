"""How fast, and how reliably, a publishing bot survives network faults.

Method: the room server runs in its own process (``enx-bot serve``); one EnxRtc (audio + video,
aiortc's test tracks) joins from this process with reconnection on (3 attempts, 15 s).

- **Socket drops**: ``POST /emulator/rooms/{id}/clients/{cid}/drop`` makes the server cut the
  bot's socket as a network fault would. Measured: time from that request to
  ``on_user_reconnect_success`` (the rejoin and the re-publish are complete: ``ready``).
  A drop is *survived* when that callback comes, no ``on_room_disconnected`` does, and the
  server then receives growing video from the new stream (checked over 1 s through
  ``GET /emulator/rooms/{id}``). Drops follow each other on the same session.
- **Link cuts** (``--link-cuts N``, root only): server and bot in two network namespaces
  joined by a veth pair (tests/netlab.py); the bot's side of the link goes down for
  ``--cut-s`` seconds. Measured: cut -> loss noticed (``on_connection_interrupted``), and
  link back -> ``on_user_reconnect_success``. The bot runs tests/rtc_probe.py in its namespace.

    .venv/bin/python bench/reconnect.py [--timed 10] [--drops 20] [--link-cuts 5 --cut-s 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from rtc_faults import ProbeProcess, ServerProcess, free_port  # noqa: E402

from bot.rtc import CALLBACK_NAMES, EnxRtc  # noqa: E402

APP_ID, APP_KEY = "bench", "bench-key-0123456789abcdef0123456789"
ROOM_INFO = {"allow_reconnect": True, "number_of_attempts": 3, "timeout_interval": 15}


class Callbacks:
    def __init__(self, rtc: EnxRtc) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.changed = asyncio.Event()
        for name in CALLBACK_NAMES:
            setattr(rtc, name, self._record(name))

    def _record(self, name: str) -> Any:
        def record(payload: dict[str, Any]) -> None:
            self.calls.append((name, payload))
            self.changed.set()

        return record

    async def wait(self, names: set[str], after: int, within: float) -> tuple[str, dict[str, Any]] | None:
        deadline = time.monotonic() + within
        while True:
            for name, payload in self.calls[after:]:
                if name in names:
                    return name, payload
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return None


class Emulator:
    def __init__(self, base: str) -> None:
        auth = base64.b64encode(f"{APP_ID}:{APP_KEY}".encode()).decode()
        self.base = base
        self.http = aiohttp.ClientSession(headers={"Authorization": f"Basic {auth}"})

    async def drop(self, room_id: str, client_id: str) -> None:
        async with self.http.post(f"{self.base}/emulator/rooms/{room_id}/clients/{client_id}/drop") as r:
            r.raise_for_status()

    async def video_packets(self, room_id: str, client_id: str, stream_id: int) -> int:
        async with self.http.get(f"{self.base}/emulator/rooms/{room_id}") as r:
            view = await r.json()
        for p in view["participants"]:
            for s in p["streams"]:
                if p["clientId"] == client_id and s["id"] == stream_id:
                    return int(s["received"]["video"]["packets"])
        return 0

    async def close(self) -> None:
        await self.http.close()


async def drops(timed: int, total: int) -> None:
    server = ServerProcess(port=free_port(), app_id=APP_ID, app_key=APP_KEY)
    room_id = server.start()
    assert room_id is not None
    emulator = Emulator(f"http://127.0.0.1:{server.port}")
    rtc = EnxRtc(label="bench")
    seen = Callbacks(rtc)
    try:
        await rtc.join_room(server.token(room_id, "bench"), {"audio": True, "video": True}, ROOM_INFO)
        if await seen.wait({"on_published_stream"}, 0, 10) is None:
            raise SystemExit("the bot did not publish")
        await asyncio.sleep(1)
        times: list[float] = []
        survived = 0
        for n in range(1, max(timed, total) + 1):
            mark = len(seen.calls)
            client_id = str(rtc.client_id)
            fault = time.monotonic()
            await emulator.drop(room_id, client_id)
            outcome = await seen.wait({"on_user_reconnect_success", "on_room_disconnected"}, mark, 20)
            if outcome is None or outcome[0] != "on_user_reconnect_success":
                print(f"drop {n}: not survived ({outcome})")
                break
            elapsed = time.monotonic() - fault
            stream_id = outcome[1]["streamId"]
            before = await emulator.video_packets(room_id, str(rtc.client_id), stream_id)
            await asyncio.sleep(1.0)
            after = await emulator.video_packets(room_id, str(rtc.client_id), stream_id)
            if after <= before:
                print(f"drop {n}: rejoined but no video reaches the server ({before} -> {after})")
                break
            times.append(elapsed)
            survived += 1
            gained = after - before
            print(f"drop {n}: reconnected in {elapsed * 1000:.0f} ms (stream {stream_id}, video +{gained})")
        first = times[:timed]
        if first:
            print(
                f"\nsocket drop -> user_reconnect_success: median {statistics.median(first) * 1000:.0f} ms, "
                f"max {max(first) * 1000:.0f} ms over the first {len(first)} drops"
            )
        print(f"consecutive drops survived: {min(survived, total)} of {total}")
    finally:
        await rtc.disconnect()
        await emulator.close()
        server.kill()


def link_cuts(runs: int, cut_s: float) -> None:
    from netlab import netlab

    with netlab() as lab:
        server = ServerProcess(
            port=8443,
            app_id=APP_ID,
            app_key=APP_KEY,
            host=lab.server_ip,
            wrap=("ip", "netns", "exec", lab.server_ns),
        )
        room_id = server.start()
        assert room_id is not None
        probe = ProbeProcess(
            server.token(room_id, "probe"), ROOM_INFO, wrap=("ip", "netns", "exec", lab.bot_ns), stay=3600
        )
        noticed: list[float] = []
        recovered: list[float] = []
        try:
            probe.wait_event("published_stream", within=20)
            for n in range(1, runs + 1):
                time.sleep(2.0)
                lab.cut()
                cut = time.monotonic()
                lost_at, _ = probe.wait_event("connection_interrupted", within=cut_s + 10)
                time.sleep(max(0.0, cut_s - (time.monotonic() - cut)))
                lab.restore()
                back = time.monotonic()
                success_at, _ = probe.wait_event("user_reconnect_success", within=20)
                noticed.append(lost_at - cut)
                recovered.append(success_at - back)
                print(
                    f"cut {n}: loss noticed after {noticed[-1]:.2f} s, "
                    f"reconnected {recovered[-1] * 1000:.0f} ms after the link came back"
                )
        finally:
            lab.restore()
            probe.stop()
            server.kill()
        print(
            f"\nlink cut {cut_s:g} s: loss noticed after median {statistics.median(noticed):.2f} s; "
            f"link back -> user_reconnect_success median {statistics.median(recovered) * 1000:.0f} ms "
            f"(n={len(recovered)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timed", type=int, default=10, help="drops whose timing makes the median")
    parser.add_argument("--drops", type=int, default=20, help="consecutive drops to survive")
    parser.add_argument("--link-cuts", type=int, default=0, help="link cuts (needs root)")
    parser.add_argument("--cut-s", type=float, default=3.0)
    args = parser.parse_args()
    if args.drops or args.timed:
        asyncio.run(drops(args.timed, args.drops))
    if args.link_cuts:
        link_cuts(args.link_cuts, args.cut_s)


if __name__ == "__main__":
    main()
