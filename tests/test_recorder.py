"""The recording bot end to end: ``enx-bot run configs/recorder.yaml`` as a real process, a
publisher over real WebRTC, files checked with PyAV (codecs copied, durations, frame counts)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import pytest

from bot.media import SyntheticVideoTrack, ToneAudioTrack
from bot.rtc import EnxRtc
from bot.server import RoomServer

ROOT = Path(__file__).resolve().parents[1]


class BotProcess:
    """``python -m bot run CONFIG --log-format json`` with its JSON log lines read as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self.stderr = b""
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())
        self._err = asyncio.ensure_future(self._read_err())

    @classmethod
    async def start(cls, config: str, env: dict[str, str]) -> BotProcess:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("ENX_")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            config,
            "--log-format",
            "json",
            cwd=ROOT,
            env={**clean, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode().strip()
            if line.startswith("{"):
                self.events.append(json.loads(line))
                self._changed.set()
        self._changed.set()

    async def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = await self.proc.stderr.read()

    async def wait_for(
        self, event: str, where: Callable[[dict[str, Any]], bool] = lambda e: True, within: float = 20
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            for e in self.events:
                if e.get("event") == event and where(e):
                    return e
            if self._reader.done():
                pytest.fail(f"the bot exited before {event}: {self.stderr.decode()[-2000:]}")
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no {event} within {within} s; saw {[e.get('event') for e in self.events]}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def stop(self, within: float = 10) -> int:
        """SIGTERM, then the exit code."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), within)
        await asyncio.wait_for(asyncio.gather(self._reader, self._err), 5)
        return code

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()

    def names(self) -> list[str]:
        return [str(e.get("event")) for e in self.events]


async def _publisher(server: RoomServer, room_id: str, name: str) -> tuple[EnxRtc, SyntheticVideoTrack]:
    video = SyntheticVideoTrack(320, 180, 15)
    rtc = EnxRtc(audio_track=ToneAudioTrack(), video_track=video)
    published = asyncio.Event()
    rtc.on_published_stream = lambda _p: published.set()
    token = server.mint_token(room_id, name=name, role="participant", user_ref=name)
    await rtc.join_room(token, {"audio": True, "video": True, "name": name}, {})
    await asyncio.wait_for(published.wait(), 15)
    return rtc, video


def _probe(path: Path) -> dict[str, Any]:
    """Codecs, durations (s) and the video frame count of a recording, read by demuxing."""
    out: dict[str, Any] = {}
    with av.open(str(path)) as container:
        streams = {s.type: s for s in container.streams if s.type in ("audio", "video")}
        pts: dict[str, list[float]] = {kind: [] for kind in streams}
        for packet in container.demux(*streams.values()):
            if packet.pts is None or packet.stream.type not in pts:
                continue
            pts[packet.stream.type].append(float(packet.pts * packet.time_base))
        for kind, stream in streams.items():
            times = sorted(pts[kind])
            out[kind] = {
                "codec": stream.codec_context.name,
                "packets": len(times),
                "duration": (times[-1] - times[0]) if times else 0.0,
            }
    return out


def _recordings(directory: Path, participant: str) -> list[Path]:
    return sorted(p for p in directory.glob(f"{participant}-*") if p.suffix in (".webm", ".mp4"))


@pytest.mark.slow
async def test_recorder_writes_one_playable_file_per_stream(room_server: RoomServer, tmp_path: Path) -> None:
    """A publishes ~10 s and leaves: one WebM with VP8 + Opus copied, 10 s long, every frame."""
    room_id = room_server.create_room(name="rec")["room_id"]
    token = room_server.mint_token(room_id, name="recorder", role="participant", user_ref="rec")
    rec = await BotProcess.start(
        "configs/recorder.yaml", {"ENX_TOKEN": token, "ENX_RECORD_DIR": str(tmp_path)}
    )
    try:
        await rec.wait_for("room_connected")
        alice, video = await _publisher(room_server, room_id, "alice")
        t_published = time.monotonic()
        await rec.wait_for("subscribed_stream", lambda e: e.get("user") == "alice")
        t_subscribed = time.monotonic()
        sent_before = video.frames_sent
        first = await rec.wait_for("first_frame", lambda e: e.get("kind") == "video", within=3)
        assert first["ms"] < 2000, first
        # the file exists and grows while recording
        await asyncio.sleep(3)
        files = _recordings(tmp_path, "alice")
        assert len(files) == 1, files
        size_3s = files[0].stat().st_size
        assert size_3s > 0
        await asyncio.sleep(7)
        sent = video.frames_sent - sent_before
        published_s = time.monotonic() - t_subscribed
        await alice.disconnect()
        await rec.wait_for("recording_closed", lambda e: e.get("user") == "alice")
        assert files[0].stat().st_size > size_3s
    finally:
        code = await rec.stop()
    assert code == 0, rec.stderr.decode()[-2000:]
    names = rec.names()
    assert "stream_added" in names and "stream_removed" in names
    removed = next(e for e in rec.events if e["event"] == "stream_removed")
    assert removed["user"] == "alice" and removed["user_id"]
    assert "published_stream" not in names  # the recorder publishes nothing
    info = _probe(files[0])
    assert files[0].suffix == ".webm"
    assert info["video"]["codec"] == "vp8" and info["audio"]["codec"] == "opus"
    for kind in ("video", "audio"):
        assert abs(info[kind]["duration"] - published_s) < 1.0, (kind, info, published_s)
    # every frame A sent once the leg was up is in the file (no re-encoding, no drops)
    assert abs(info["video"]["packets"] - sent) <= 0.05 * sent, (info, sent)
    print(
        f"subscribed {t_subscribed - t_published:.2f} s after A published; first video frame "
        f"{first['ms']} ms after the leg started; file {info}; A sent {sent} frames"
    )


@pytest.mark.slow
async def test_recorder_killed_with_sigterm_leaves_a_valid_file(
    room_server: RoomServer, tmp_path: Path
) -> None:
    room_id = room_server.create_room(name="rec-kill")["room_id"]
    token = room_server.mint_token(room_id, name="recorder", role="participant", user_ref="rec")
    rec = await BotProcess.start(
        "configs/recorder.yaml", {"ENX_TOKEN": token, "ENX_RECORD_DIR": str(tmp_path)}
    )
    alice: EnxRtc | None = None
    try:
        await rec.wait_for("room_connected")
        alice, _ = await _publisher(room_server, room_id, "alice")
        await rec.wait_for("subscribed_stream", lambda e: e.get("user") == "alice")
        await asyncio.sleep(4)
        t0 = time.monotonic()
        code = await rec.stop()
        exit_s = time.monotonic() - t0
    finally:
        rec.kill()
        if alice is not None:
            await alice.disconnect()
    assert code == 0, rec.stderr.decode()[-2000:]
    assert exit_s < 5, exit_s
    assert "recording_closed" in rec.names()
    files = _recordings(tmp_path, "alice")
    assert len(files) == 1
    info = _probe(files[0])
    assert info["video"]["codec"] == "vp8" and info["audio"]["codec"] == "opus"
    assert 3.0 < info["video"]["duration"] < 5.5, info
    assert 3.0 < info["audio"]["duration"] < 5.5, info
