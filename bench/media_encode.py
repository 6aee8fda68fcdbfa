"""CPU per publisher: aiortc encoding per sender (naive) vs one shared encoding (shared).

Method: N aiortc publishers in one process send VP8 640x360@15 + Opus to N aiortc receivers
in another process, over ICE on the machine's own address (signalling through this script's
pipes). Receivers do not decode (aiortc's decoder thread is replaced by one that drops the
frames), so they take little of the machine from the senders; they count RTP packets. Only the
sender process is measured: its user+system CPU (``time.process_time``, every thread) over a
wall-clock window that starts after every connection is up and a warm-up has passed.

- naive: each publisher has its own SyntheticVideoTrack + ToneAudioTrack; aiortc encodes per
  sender (libvpx at aiortc's default 500 kbps, libopus).
- shared: one SyntheticVideoEncoder (libvpx, 500 kbps) and one ToneAudioEncoder for the
  process (bot.media.SharedMedia); each publisher sends subscriber tracks of them, so aiortc
  only packetizes (aiortc's own sender task per publisher).
- direct: the same shared encoders, published through the SDK's leg (``bot.rtc.legs.PublishLeg``)
  as a bot does: each packet goes from the encoder straight to every sender's socket
  (``bot.webrtc.patches.direct_send``), with no task, queue or packetization per publisher.

100% = one core. "fps" is video frames per second per publisher actually handed to aiortc,
to show whether the sender process kept up.

    .venv/bin/python bench/media_encode.py [--n 10 30] [--warmup 3] [--window 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WIDTH, HEIGHT, FPS = 640, 360, 15.0
MODES = ("naive", "shared", "direct")


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def read_json(reader: asyncio.StreamReader) -> dict[str, Any]:
    line = await reader.readline()
    if not line:
        raise RuntimeError("peer process closed its pipe")
    obj: dict[str, Any] = json.loads(line)
    return obj


async def stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def prefer(transceiver: Any, mime: str) -> None:
    from aiortc import RTCRtpSender

    caps = RTCRtpSender.getCapabilities(mime.split("/")[0]).codecs
    transceiver.setCodecPreferences([c for c in caps if c.mimeType.lower() == mime.lower()])


async def wait_connected(pcs: list[Any], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while any(pc.connectionState != "connected" for pc in pcs):
        if time.monotonic() > deadline:
            states = [pc.connectionState for pc in pcs]
            raise TimeoutError(f"not all connected: {states}")
        await asyncio.sleep(0.05)


async def measure_window(
    n: int, window: float, frames: Callable[[], int], packets_sent: Callable[[], Awaitable[int]], shared: Any
) -> None:
    """The sender process's CPU, video frames and RTP packets over ``window`` seconds: emitted."""

    def encoded() -> int:
        return sum(getattr(s, "frames_encoded", 0) for s in shared.streams) if shared else 0

    p0 = await packets_sent()
    f0, c0, t0, e0 = frames(), time.process_time(), time.monotonic(), encoded()
    await asyncio.sleep(window)
    c1, t1, f1, e1 = time.process_time(), time.monotonic(), frames(), encoded()
    p1 = await packets_sent()
    wall = t1 - t0
    emit(
        {
            "result": {
                "cpu_pct": 100 * (c1 - c0) / wall,
                "fps": (f1 - f0) / wall / n,
                "rtp_pps": (p1 - p0) / wall,
                "shared_encodes_per_s": (e1 - e0) / wall,
                "wall": wall,
            }
        }
    )


# --- sender process ------------------------------------------------------------------------------


async def run_sender(mode: str, n: int, warmup: float, window: float) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection
    from aiortc.mediastreams import MediaStreamTrack

    from bot.media import MediaSpec, SharedMedia, SyntheticVideoTrack, ToneAudioTrack

    stdin = await stdin_reader()
    shared = SharedMedia() if mode in ("shared", "direct") else None
    spec = MediaSpec(width=WIDTH, height=HEIGHT, fps=FPS)
    pcs, videos = [], []
    if mode == "direct":
        await run_direct(stdin, shared, spec, n, warmup, window)
        return
    for _ in range(n):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        audio: MediaStreamTrack | None
        video: MediaStreamTrack | None
        if shared is not None:
            audio, video = shared.tracks(spec, audio=True, video=True)
        else:
            audio, video = ToneAudioTrack(), SyntheticVideoTrack(WIDTH, HEIGHT, FPS)
        assert audio is not None and video is not None
        prefer(pc.addTransceiver(audio, direction="sendonly"), "audio/opus")
        prefer(pc.addTransceiver(video, direction="sendonly"), "video/VP8")
        pcs.append(pc)
        videos.append(video)
    for pc in pcs:
        await pc.setLocalDescription(await pc.createOffer())
    emit({"offers": [pc.localDescription.sdp for pc in pcs]})
    answers = (await read_json(stdin))["answers"]
    from aiortc import RTCSessionDescription

    for pc, sdp in zip(pcs, answers, strict=True):
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
    await wait_connected(pcs)
    await asyncio.sleep(warmup)

    def frames() -> int:
        return sum(int(getattr(v, "frames_sent", 0) or getattr(v, "packets_sent", 0)) for v in videos)

    async def packets_sent() -> int:
        total = 0
        for pc in pcs:
            for stat in (await pc.getStats()).values():
                if stat.type == "outbound-rtp":
                    total += stat.packetsSent
        return total

    await measure_window(n, window, frames, packets_sent, shared)
    await read_json(stdin)  # "stop"
    for pc in pcs:
        await pc.close()
    if shared is not None:
        await shared.aclose()


async def run_direct(stdin: Any, shared: Any, spec: Any, n: int, warmup: float, window: float) -> None:
    from bot.agent.logs import configure_logging
    from bot.rtc.legs import PublishLeg

    configure_logging("json", "warning", stream=sys.stderr)  # stdout is this script's pipe
    legs = []
    for _ in range(n):
        audio, video = shared.tracks(spec, audio=True, video=True)
        legs.append(PublishLeg(tracks={"audio": audio, "video": video}))
    emit({"offers": [await leg.create_offer() for leg in legs]})
    answers = (await read_json(stdin))["answers"]
    for leg, sdp in zip(legs, answers, strict=True):
        await leg.apply_answer(sdp)
    await wait_connected([leg.pc for leg in legs])
    await asyncio.sleep(warmup)
    assert all(leg.direct.get("video") is not None for leg in legs), "not on the direct path"

    def frames() -> int:
        return sum(leg.direct["video"].frames_sent for leg in legs)  # type: ignore[union-attr]

    async def packets_sent() -> int:
        total = 0
        for leg in legs:
            total += sum((await leg.sent_packets()).values())
        return total

    await measure_window(n, window, frames, packets_sent, shared)
    await read_json(stdin)  # "stop"
    for leg in legs:
        await leg.aclose()
    await shared.aclose()


# --- receiver process ------------------------------------------------------------------------------


def _drop_frames(loop: Any, input_q: Any, output_q: Any, *args: Any) -> None:
    """Stands in for aiortc's decoder thread: take encoded frames, decode nothing."""
    while input_q.get() is not None:
        pass
    asyncio.run_coroutine_threadsafe(output_q.put(None), loop)


async def run_receiver() -> None:
    import aiortc.rtcrtpreceiver
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    aiortc.rtcrtpreceiver.decoder_worker = _drop_frames  # type: ignore[assignment]
    stdin = await stdin_reader()
    offers = (await read_json(stdin))["offers"]
    pcs = []
    for sdp in offers:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        pcs.append(pc)
    emit({"answers": [pc.localDescription.sdp for pc in pcs]})
    await read_json(stdin)  # "stats"
    received = 0
    for pc in pcs:
        for stat in (await pc.getStats()).values():
            if stat.type == "inbound-rtp":
                received += stat.packetsReceived
    emit({"received": received})
    await read_json(stdin)  # "stop"
    for pc in pcs:
        await pc.close()


# --- orchestration ---------------------------------------------------------------------------------


async def spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=None if os.environ.get("BENCH_DEBUG") else asyncio.subprocess.DEVNULL,
        cwd=ROOT,
        limit=64 * 1024 * 1024,
    )


def send(proc: asyncio.subprocess.Process, obj: dict[str, Any]) -> None:
    assert proc.stdin is not None
    proc.stdin.write((json.dumps(obj) + "\n").encode())


async def measure(mode: str, n: int, warmup: float, window: float) -> dict[str, Any]:
    receiver = await spawn("--role", "receive")
    sender = await spawn(
        "--role", "send", "--mode", mode, "--n", str(n), "--warmup", str(warmup), "--window", str(window)
    )
    assert sender.stdout is not None and receiver.stdout is not None
    try:
        send(receiver, await read_json(sender.stdout))
        send(sender, await read_json(receiver.stdout))
        result: dict[str, Any] = (await asyncio.wait_for(read_json(sender.stdout), 60 + warmup + window))[
            "result"
        ]
        send(receiver, {"cmd": "stats"})
        result["received"] = (await read_json(receiver.stdout))["received"]
        for proc in (sender, receiver):
            send(proc, {"cmd": "stop"})
        await asyncio.wait_for(asyncio.gather(sender.wait(), receiver.wait()), 15)
        return result
    finally:
        for proc in (sender, receiver):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def main(ns: list[int], warmup: float, window: float) -> None:
    print(f"# {os.cpu_count()} CPUs; VP8 {WIDTH}x{HEIGHT}@{FPS:g} 500 kbps + Opus per publisher")
    print(f"# warm-up {warmup:g} s, window {window:g} s; CPU % of one core, sender process only")
    print(f"{'N':>3} {'mode':<7} {'cpu %':>7} {'%/pub':>7} {'fps/pub':>8} {'rtp pkt/s':>10} {'enc/s':>6}")
    per_pub: dict[tuple[int, str], float] = {}
    for n in ns:
        for mode in MODES:
            r = await measure(mode, n, warmup, window)
            per_pub[(n, mode)] = r["cpu_pct"] / n
            enc = f"{r['shared_encodes_per_s']:.0f}" if mode != "naive" else "-"
            print(
                f"{n:>3} {mode:<7} {r['cpu_pct']:>7.1f} {r['cpu_pct'] / n:>7.2f} {r['fps']:>8.1f} "
                f"{r['rtp_pps']:>10.0f} {enc:>6}",
                flush=True,
            )
    for n in ns:
        naive, shared, direct = (per_pub[(n, m)] for m in MODES)
        print(
            f"N={n}: naive {naive:.2f}% vs shared {shared:.2f}% ({naive / shared:.1f}x) vs direct "
            f"{direct:.2f}% ({naive / direct:.1f}x) of a core per publisher"
        )
    if len(ns) >= 2:
        lo, hi = min(ns), max(ns)
        for mode in MODES:
            slope = (per_pub[(hi, mode)] * hi - per_pub[(lo, mode)] * lo) / (hi - lo)
            print(f"{mode}: each publisher beyond {lo} adds {slope:.2f}% of a core")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--role", choices=["main", "send", "receive"], default="main")
    parser.add_argument("--mode", choices=list(MODES), default="shared")
    parser.add_argument("--n", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--window", type=float, default=10.0)
    args = parser.parse_args()
    if args.role == "send":
        asyncio.run(run_sender(args.mode, args.n[0], args.warmup, args.window))
    elif args.role == "receive":
        asyncio.run(run_receiver())
    else:
        asyncio.run(main(args.n, args.warmup, args.window))
