"""Helpers for the EnxRtc fault tests (reconnect, TURN, mutes, bandwidth): a callback recorder,
the server's received counters, a room server in its own process (to kill it for real), and
a video source whose bitrate follows the encoder's target (to see a cap take effect).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import VideoStreamTrack

from bot.proto import mint_token
from bot.rtc import CALLBACK_NAMES, EnxRtc
from bot.server import RoomServer

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
AV = {"audio": True, "video": True}
NO_MEDIA = {"audio": False, "video": False}


class Recorder:
    """Every callback of one EnxRtc, in order, with its time; lets a test wait for one."""

    def __init__(self, rtc: EnxRtc) -> None:
        self.rtc = rtc
        self.calls: list[tuple[float, str, dict[str, Any]]] = []
        self._changed = asyncio.Event()
        for name in CALLBACK_NAMES:
            setattr(rtc, name, self._recorder(name))

    def _recorder(self, name: str) -> Callable[[dict[str, Any]], None]:
        def record(payload: dict[str, Any]) -> None:
            self.calls.append((time.monotonic(), name, payload))
            self._changed.set()

        return record

    def names(self) -> list[str]:
        return [name for _, name, _ in self.calls]

    def payloads(self, name: str) -> list[dict[str, Any]]:
        return [p for _, n, p in self.calls if n == name]

    def time_of(self, name: str) -> float:
        return next(t for t, n, _ in self.calls if n == name)

    async def wait_for(
        self,
        name: str,
        match: Callable[[dict[str, Any]], bool] = lambda p: True,
        within: float = 10.0,
        after: int = 0,
    ) -> dict[str, Any]:
        """The first ``name`` callback (from the ``after``-th call on) matching ``match``."""
        async with asyncio.timeout(within):
            while True:
                for _, n, payload in self.calls[after:]:
                    if n == name and match(payload):
                        return payload
                self._changed.clear()
                await self._changed.wait()


async def eventually(check: Callable[[], bool], within: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.05)


def own_stream(server: RoomServer, room_id: str, client_id: str | None) -> dict[str, Any] | None:
    """The (last) stream a participant has on the server, with its ``received`` counters."""
    for p in server.room_view(room_id)["participants"]:
        if p["clientId"] == client_id and p["streams"]:
            return dict(p["streams"][-1])
    return None


def packets(server: RoomServer, room_id: str, client_id: str | None, kind: str) -> int:
    stream = own_stream(server, room_id, client_id)
    return 0 if stream is None else int(stream["received"][kind]["packets"])


async def growth(server: RoomServer, room_id: str, rtc: EnxRtc, kind: str, seconds: float = 1.0) -> int:
    """How many ``kind`` packets of ``rtc``'s stream the server received in ``seconds``."""
    before = packets(server, room_id, rtc.client_id, kind)
    await asyncio.sleep(seconds)
    return packets(server, room_id, rtc.client_id, kind) - before


async def joined(
    server: RoomServer,
    room_id: str,
    name: str,
    local_info: dict[str, Any],
    room_info: dict[str, Any] | None = None,
    **kw: Any,
) -> tuple[EnxRtc, Recorder]:
    rtc = EnxRtc(label=name, **kw)
    rec = Recorder(rtc)
    await rtc.join_room(server.mint_token(room_id, name=name), local_info, room_info)
    return rtc, rec


class TexturedVideo(VideoStreamTrack):
    """320x240 grey with fresh low-amplitude noise every frame: the VP8 encoder's output
    follows its target bitrate (about 550 kbps uncapped, ~150 at a 150 kbps cap), unlike
    aiortc's flat test picture (a few kbps whatever the target)."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._rng = np.random.default_rng(7)

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        image = (128 + self._rng.integers(-24, 24, (240, 320, 3))).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


def basic_auth(server: RoomServer) -> dict[str, str]:
    """The emulator's HTTP Basic ``APP_ID:APP_KEY`` header."""
    raw = f"{server.app_id}:{server.app_key}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``python -m bot serve`` in its own process group, so it can be killed for real."""

    def __init__(
        self,
        *,
        port: int,
        app_id: str,
        app_key: str,
        host: str = "127.0.0.1",
        wrap: tuple[str, ...] = (),
    ) -> None:
        """``wrap`` prefixes the command (``("ip", "netns", "exec", ns)`` to run it elsewhere)."""
        self.port, self.app_id, self.app_key, self.host, self.wrap = port, app_id, app_key, host, wrap
        self.proc: subprocess.Popen[bytes] | None = None
        self.lines: list[str] = []
        # its rooms outlive a kill (a restarted server knows them), in a folder of the test's own
        self.data_dir = tempfile.mkdtemp(prefix="enx-server-")

    def start(self, create_room: str | None = "reconnect", extra: tuple[str, ...] = ()) -> str | None:
        """Start and wait until it serves; returns the id of the room it created."""
        argv = [
            *self.wrap, PYTHON, "-m", "bot", "serve", "--host", self.host, "--port", str(self.port),
            "--app-id", self.app_id, "--app-key", self.app_key, "--log-format", "json",
            "--data-dir", self.data_dir, *extra,
        ]  # fmt: skip
        if create_room:
            argv += ["--create-room", create_room]
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"room server exited with {self.proc.wait()}")
            self.lines.append(line.decode(errors="replace"))
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("event") == "server_started":
                    # keep reading its log, or a full pipe would stall it
                    threading.Thread(target=self._drain, args=(self.proc.stdout,), daemon=True).start()
                    room = record.get("room_id") or record.get("room")
                    return None if room is None else str(room)
        raise RuntimeError("room server did not start within 15 s")

    def _drain(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line.decode(errors="replace"))

    def token(self, room_id: str, name: str) -> str:
        return mint_token(
            app_key=self.app_key,
            host=f"{self.host}:{self.port}",
            room_id=room_id,
            name=name,
            role="participant",
            now=time.time(),
        )

    def kill(self) -> None:
        """SIGKILL: no goodbye on any socket; the kernel resets them."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


@contextlib.contextmanager
def server_process(**kw: Any) -> Iterator[ServerProcess]:
    server = ServerProcess(**kw)
    try:
        yield server
    finally:
        server.kill()


class ProbeProcess:
    """``tests/rtc_probe.py`` (an EnxRtc in its own process, e.g. in the bot's namespace):
    its JSON lines, each with the time it was read."""

    def __init__(
        self, token: str, room_info: dict[str, Any], *, wrap: tuple[str, ...] = (), stay: float = 60
    ):
        argv = [*wrap, PYTHON, str(ROOT / "tests" / "rtc_probe.py"), "--room-info", json.dumps(room_info)]
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
        self.proc = subprocess.Popen(
            [*argv, "--stay", str(stay)],
            env={**os.environ, "ENX_TOKEN": token},
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            start_new_session=True,
        )
        self.events: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self.seen: list[tuple[float, dict[str, Any]]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.events.put((time.monotonic(), json.loads(line)))

    def wait_event(self, name: str, within: float) -> tuple[float, dict[str, Any]]:
        """The next ``name`` line (earlier lines are kept in ``seen``); AssertionError with
        the probe's log tail when it does not come."""
        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            try:
                at, event = self.events.get(timeout=max(0.01, left))
            except queue.Empty:
                raise AssertionError(
                    f"no {name} within {within} s; saw {self.names()}\n{self.log_tail()}"
                ) from None
            self.seen.append((at, event))
            if event.get("event") == name:
                return at, event

    def names(self) -> list[str]:
        return [str(e.get("event")) for _, e in self.seen]

    def log_tail(self, lines: int = 15) -> str:
        self.stderr.seek(0)
        return "\n".join(self.stderr.read().decode(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.stderr.close()
