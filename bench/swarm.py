"""A swarm of publishing bots against the room server, on this machine: CPU and memory per bot,
join latency, shutdown time and delivery, from the server's counters and the OS.

Method, per scenario (a number of bots, shared media or the naive one-encoder-per-bot):

1. Start the room server in its own process (``enx-bot serve``, state in memory).
2. Start ``enx-bot run configs/swarm.yaml`` (audio + 640x360@15 VP8 video per bot) with
   ``ENX_BOTS``, ``ENX_RAMP`` joins/s, ``ENX_WORKERS``, ``ENX_SHARED_MEDIA`` and rooms of
   ``--per-room`` bots created through the REST API (``ENX_ROOMS``/``ENX_BOTS_PER_ROOM``).
3. Wait for every bot's ``published_stream`` log line; then ``--settle`` seconds.
4. Over a ``--window`` of seconds: CPU (utime+stime from /proc) of the swarm's processes (the
   parent and its workers) and of the server; memory (RSS and PSS from /proc/PID/smaps_rollup)
   of the swarm's processes at the end; and from the server's room views
   (``GET /emulator/rooms/{id}``) the video frames and audio packets each stream delivered.
   A bot "delivers" when both grew. Expected: 15 frames/s of video, 50 packets/s of audio.
5. SIGTERM to the swarm's parent; time until the server's room views are empty and until the
   parent exits; check its exit code and that no worker process is left.

Join latency is ``published_stream.publish_ms`` from the bots' own log lines (from the call to
join_room to the media server's ``ready``). CPU per bot = swarm CPU / bots delivering (100% =
one core). Memory per additional bot is the slope of PSS between two shared scenarios.

    .venv/bin/python bench/swarm.py --shared 50,100,200 --naive 10 [--ramp 20] [--window 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bot.agent.bot.tokens import basic_auth

sys.path.insert(0, str(Path(__file__).resolve().parent))
from single_bot import APP_ID, APP_KEY, ROOT, TICKS, bot_command, cpu_seconds, free_port

VIDEO_FPS, AUDIO_PPS = 15, 50


def cpu_of(pids: list[int]) -> float:
    """CPU seconds of these processes (one that has gone counts 0)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.append(int(entry.name))
    return out


def tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(children(p))
    return pids


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    k = max(0, math.ceil(q / 100 * len(ordered)) - 1)
    return ordered[k]


@dataclass
class Result:
    name: str
    bots: int
    shared: bool
    workers: str
    rooms: int
    published: int = 0
    delivering: int = 0
    window_s: float = 0.0
    swarm_cpu_pct: float = 0.0
    server_cpu_pct: float = 0.0
    cpu_per_bot_pct: float = 0.0
    rss_mib: float = 0.0
    pss_mib: float = 0.0
    processes: int = 0
    connect_p50_ms: float = math.nan
    """join_room -> room_connected (signalling only)."""
    connect_p99_ms: float = math.nan
    join_p50_ms: float = math.nan
    join_p99_ms: float = math.nan
    join_max_ms: float = math.nan
    join_failed: int = 0
    join_retries: int = 0
    other_cpu_pct: float = 0.0
    """CPU the rest of the machine used during the window (other work on a shared box)."""
    udp_rcvbuf_drops: int = 0
    """Datagrams the kernel dropped for full receive buffers during the window (any socket)."""
    encoder_skipped: int = 0
    """Frames the shared encoders skipped because they ran late (from swarm_finished)."""
    video_delivery_pct: float = 0.0
    audio_delivery_pct: float = 0.0
    shutdown_gone_s: float = math.nan
    shutdown_exit_s: float = math.nan
    exit_code: int | None = None
    orphans: int = 0
    notes: list[str] = field(default_factory=list)


PROFILE: Path | None = None
"""``--profile DIR``: the server and the swarm's parent run under cProfile (wall clock), for
attribution only: the figures of such a run are not the benchmark's."""


SAMPLE: Path | None = None
"""``--sample DIR``: the server and the swarm's parent run under ``cpu_sampler.py``, sampled
during the measurement window only (SIGUSR1/SIGUSR2)."""


def python_bot(name: str) -> list[str]:
    return bot_command(name, profile=PROFILE, sample=SAMPLE)


class Server:
    def __init__(self, extra: list[str] | None = None, port: int | None = None) -> None:
        self.extra = extra or []
        self.port = port or free_port()
        self.api = f"http://127.0.0.1:{self.port}/video/v2"
        self.proc: asyncio.subprocess.Process | None = None
        self.http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Server:
        self.proc = await asyncio.create_subprocess_exec(
            *python_bot("server"), "serve", "--port", str(self.port),
            "--app-id", APP_ID, "--app-key", APP_KEY, "--log-format", "json", "--log-level", "warning",
            *self.extra,
            cwd=ROOT, env={**os.environ, "ENX_DATA_DIR": ":memory:"},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        self.http = aiohttp.ClientSession(headers=basic_auth(APP_ID, APP_KEY))
        for _ in range(100):
            try:
                await self.rooms()
                return self
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
        raise RuntimeError("the room server did not start")

    async def __aexit__(self, *exc: object) -> None:
        if self.http is not None:
            await self.http.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    async def rooms(self) -> list[str]:
        assert self.http is not None
        async with self.http.get(f"{self.api}/rooms") as r:
            return [room["room_id"] for room in (await r.json())["rooms"]]

    async def views(self, room_ids: list[str]) -> list[dict[str, Any]]:
        assert self.http is not None

        async def one(room_id: str) -> dict[str, Any]:
            async with self.http.get(f"http://127.0.0.1:{self.port}/emulator/rooms/{room_id}") as r:  # type: ignore[union-attr]
                data: dict[str, Any] = await r.json()
                return data

        return list(await asyncio.gather(*(one(r) for r in room_ids)))


def streams(views: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    out = {}
    for view in views:
        for p in view.get("participants", []):
            for s in p.get("streams", []):
                out[(p["clientId"], s["id"])] = s["received"]
    return out


def participants(views: list[dict[str, Any]]) -> int:
    return sum(len(v.get("participants", [])) for v in views)


def log_events(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return (total - idle) / TICKS, total / TICKS


def udp_rcvbuf_errors() -> int:
    snmp = Path("/proc/net/snmp").read_text().splitlines()
    lines = [line.split() for line in snmp if line.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


async def scenario(bots: int, shared: bool, a: argparse.Namespace) -> Result:
    name = f"{'shared' if shared else 'naive'}-{bots}"
    ramp, workers, per_room, settle, window = a.ramp, a.workers, a.per_room, a.settle, a.window
    rooms = max(1, math.ceil(bots / per_room))
    res = Result(name=name, bots=bots, shared=shared, workers=workers, rooms=rooms)
    out_path = Path(a.logs) / f"{name}.jsonl"
    err_path = Path(a.logs) / f"{name}.stderr"
    async with Server(a.server_args.split()) as server:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ENX_")},
            "ENX_API_URL": server.api,
            "ENX_APP_ID": APP_ID,
            "ENX_APP_KEY": APP_KEY,
            "ENX_BOTS": str(bots),
            "ENX_RAMP": str(ramp),
            "ENX_WORKERS": workers,
            "ENX_SHARED_MEDIA": "true" if shared else "false",
            "ENX_ROOMS": str(rooms),
            "ENX_BOTS_PER_ROOM": str(per_room),
        }
        with out_path.open("wb") as out, err_path.open("wb") as err:
            swarm = await asyncio.create_subprocess_exec(
                *python_bot(name), "run", "configs/swarm.yaml", "--log-format", "json",
                cwd=ROOT, env=env, stdout=out, stderr=err,
            )  # fmt: skip
        t_start = time.monotonic()
        deadline = t_start + bots / ramp + 60
        published = 0
        while time.monotonic() < deadline and swarm.returncode is None:
            await asyncio.sleep(1)
            published = sum(1 for e in log_events(out_path) if e.get("event") == "published_stream")
            if published >= bots:
                break
        res.published = published
        if published < bots:
            res.notes.append(f"only {published}/{bots} published within {deadline - t_start:.0f} s")
        await asyncio.sleep(settle)
        room_ids = await server.rooms()
        pids = tree(swarm.pid)
        res.processes = len(pids)
        assert server.proc is not None
        if SAMPLE is not None:
            swarm.send_signal(signal.SIGUSR1)
            server.proc.send_signal(signal.SIGUSR1)
        c0 = cpu_of(pids)
        s0 = cpu_seconds(server.proc.pid)
        m0, u0 = machine_busy(), udp_rcvbuf_errors()
        v0 = streams(await server.views(room_ids))
        t0 = time.monotonic()
        await asyncio.sleep(window)
        v1 = streams(await server.views(room_ids))
        t1 = time.monotonic()
        c1 = cpu_of(pids)
        s1 = cpu_seconds(server.proc.pid)
        if SAMPLE is not None:
            swarm.send_signal(signal.SIGUSR2)
            server.proc.send_signal(signal.SIGUSR2)
        m1, u1 = machine_busy(), udp_rcvbuf_errors()
        res.udp_rcvbuf_drops = u1 - u0
        mem = [memory_kib(p) for p in pids]
        res.rss_mib = sum(m[0] for m in mem) / 1024
        res.pss_mib = sum(m[1] for m in mem) / 1024
        res.window_s = t1 - t0
        res.swarm_cpu_pct = 100 * (c1 - c0) / res.window_s
        res.server_cpu_pct = 100 * (s1 - s0) / res.window_s
        busy_pct = 100 * (m1[0] - m0[0]) / res.window_s
        res.other_cpu_pct = max(0.0, busy_pct - res.swarm_cpu_pct - res.server_cpu_pct)
        frames = packets = 0
        for key, after in v1.items():
            before = v0.get(key, {"video": {"frames": 0}, "audio": {"packets": 0}})
            df = after["video"]["frames"] - before["video"]["frames"]
            dp = after["audio"]["packets"] - before["audio"]["packets"]
            frames += df
            packets += dp
            res.delivering += df > 0 and dp > 0
        res.video_delivery_pct = 100 * frames / (VIDEO_FPS * res.window_s * bots)
        res.audio_delivery_pct = 100 * packets / (AUDIO_PPS * res.window_s * bots)
        res.cpu_per_bot_pct = res.swarm_cpu_pct / max(1, res.delivering)

        # shutdown: SIGTERM to the parent, then until the server's rooms are empty / it exits
        t_sig = time.monotonic()
        swarm.send_signal(signal.SIGTERM)
        exited = asyncio.ensure_future(swarm.wait())
        exited.add_done_callback(lambda _: setattr(res, "shutdown_exit_s", time.monotonic() - t_sig))
        while time.monotonic() - t_sig < 30:
            if participants(await server.views(room_ids)) == 0:
                res.shutdown_gone_s = time.monotonic() - t_sig
                break
            await asyncio.sleep(0.05)
        try:
            res.exit_code = await asyncio.wait_for(exited, max(0.1, 30 - (time.monotonic() - t_sig)))
        except TimeoutError:
            res.notes.append("the swarm did not exit within 30 s of SIGTERM")
            for p in pids:
                with_kill(p)
            res.exit_code = await swarm.wait()
        lost = sum(1 for e in log_events(out_path) if e.get("event") == "connection_lost")
        if lost:
            res.notes.append(f"{lost} connection_lost events (bots reconnecting)")
        res.orphans = sum(alive(p) for p in pids)

    events = log_events(out_path)
    joins = [float(e["publish_ms"]) for e in events if e.get("event") == "published_stream"]
    connects = [float(e["join_ms"]) for e in events if e.get("event") == "room_connected"]
    res.connect_p50_ms = statistics.median(connects) if connects else math.nan
    res.connect_p99_ms = percentile(connects, 99)
    res.join_p50_ms = statistics.median(joins) if joins else math.nan
    res.join_p99_ms = percentile(joins, 99)
    res.join_max_ms = max(joins) if joins else math.nan
    res.join_failed = sum(1 for e in events if e.get("event") == "join_failed")
    res.join_retries = sum(1 for e in events if e.get("event") == "join_retry")
    finished = [e for e in events if e.get("event") == "swarm_finished"]
    res.encoder_skipped = sum(int(e.get("media_skipped", 0)) for e in finished)
    return res


def with_kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def row(r: Result) -> str:
    return (
        f"| {r.name} | {r.rooms}x{math.ceil(r.bots / r.rooms)} | {r.processes} | {r.published}/{r.bots} | "
        f"{r.delivering} | {r.swarm_cpu_pct:.0f}% | **{r.cpu_per_bot_pct:.2f}%** | {r.server_cpu_pct:.0f}% | "
        f"{r.pss_mib:.0f} / {r.rss_mib:.0f} | {r.connect_p50_ms:.0f} / {r.connect_p99_ms:.0f} | "
        f"{r.join_p50_ms:.0f} / {r.join_p99_ms:.0f} | "
        f"{r.join_failed} ({r.join_retries}) | {r.video_delivery_pct:.1f}% / {r.audio_delivery_pct:.1f}% | "
        f"{r.shutdown_gone_s:.2f} / {r.shutdown_exit_s:.2f} | {r.exit_code} | {r.orphans} | "
        f"{r.other_cpu_pct:.0f}% | {r.udp_rcvbuf_drops} | {r.encoder_skipped} |"
    )


HEADER = (
    "| scenario | rooms x bots | processes | published | delivering | swarm CPU | CPU per bot | server CPU | "
    "PSS / RSS MiB | connected p50 / p99 ms | published p50 / p99 ms | join failed (retries) | "
    "video / audio delivered | "
    "SIGTERM -> gone / exit s | exit | orphans | other CPU | UDP rcvbuf drops | encoder skipped |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


async def run_all(a: argparse.Namespace) -> list[Result]:
    plan = [(int(n), True) for n in a.shared.split(",") if n]
    plan += [(int(n), False) for n in a.naive.split(",") if n]
    results: list[Result] = []
    for bots, shared in plan:
        r = await scenario(bots, shared, a)
        results.append(r)
        notes = [f"  note: {n}" for n in r.notes]
        print(HEADER if len(results) == 1 else "", row(r), *notes, sep="\n", flush=True)
    return results


def main(a: argparse.Namespace) -> None:
    global PROFILE, SAMPLE
    PROFILE = Path(a.profile) if a.profile else None
    SAMPLE = Path(a.sample) if a.sample else None
    Path(a.logs).mkdir(parents=True, exist_ok=True)
    print(
        f"load average before: {os.getloadavg()[0]:.2f}; rmem_default "
        f"{Path('/proc/sys/net/core/rmem_default').read_text().strip()}",
        flush=True,
    )
    results = asyncio.run(run_all(a))
    shared_runs = sorted((r for r in results if r.shared), key=lambda r: r.bots)
    if len(shared_runs) >= 2:
        lo, hi = shared_runs[0], shared_runs[-1]
        slope = (hi.pss_mib - lo.pss_mib) / (hi.bots - lo.bots)
        rss_slope = (hi.rss_mib - lo.rss_mib) / (hi.bots - lo.bots)
        print(
            f"\nmemory per additional bot ({lo.name} -> {hi.name}): PSS {slope:.2f} MiB, "
            f"RSS {rss_slope:.2f} MiB"
        )
    naive = [r for r in results if not r.shared]
    if naive and shared_runs:
        ratio = naive[0].cpu_per_bot_pct / shared_runs[-1].cpu_per_bot_pct
        print(f"CPU per bot, naive / shared: {ratio:.1f}x")
    Path(a.out).write_text(json.dumps([asdict(r) for r in results], indent=2))
    print(f"\nraw results: {a.out}; swarm logs: {a.logs}/")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", default="50,100,200", help="bot counts with shared media, comma-separated")
    ap.add_argument("--naive", default="10", help="bot counts encoding their own media")
    ap.add_argument("--ramp", type=float, default=20.0, help="joins per second")
    ap.add_argument("--workers", default="auto")
    ap.add_argument("--per-room", type=int, default=10, help="bots per room")
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--server-args", default="", help="extra `enx-bot serve` flags, e.g. --full-intake")
    ap.add_argument("--profile", metavar="DIR", help="run the server and the swarm under cProfile")
    ap.add_argument("--sample", metavar="DIR", help="sample the server's and the swarm's CPU in the window")
    ap.add_argument("--logs", default="/tmp/enx-bench-swarm")
    ap.add_argument("--out", default="/tmp/enx-bench-swarm/results.json")
    main(ap.parse_args())
