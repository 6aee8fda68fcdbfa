"""Which of bot.webrtc's fast paths this aiortc/aioice still allows, probed once per process.

Every fast path replaces a private attribute or method of aiortc/aioice on one object (never a
class). Each patch module has a ``probe``; here they are run once against a throw-away
``RTCPeerConnection`` so an upgrade that renames something is seen at start-up (logged at
WARNING as ``webrtc_fast_paths``, and exported as ``enx_fast_path{name}`` gauges), not as a
quietly slower swarm. ``tests/webrtc/test_compat.py`` (``make upgrade-check``) is the canary.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aiortc import RTCPeerConnection

from .patches import (
    direct_send,
    encoder_cap,
    fast_srtp,
    keyframes,
    lean_intake,
    receive_tap,
    rtcp_taps,
    setup_once,
)

TESTED: Mapping[str, str] = {"aiortc": "1.16", "aioice": "0.13"}
"""The minors every fast path was written against (``requirements.lock``)."""


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "missing"


def _minor(text: str) -> str:
    return ".".join(text.split(".")[:2])


@dataclass(frozen=True, kw_only=True)
class FastPaths:
    """One flag per fast path (True: this aiortc has what it replaces), and the versions."""

    direct_send: bool
    """Shared packets written straight to the socket (publish legs of a shared source)."""
    lean_intake: bool
    """Unwanted RTP counted at the ICE connection (server publish legs, discarding viewers)."""
    receive_tap: bool
    """Encoded frames taken from the receiver instead of decoded (subscribers, the server)."""
    tap_threadless: bool
    """A tapped receiver starts no decoder thread (aiortc's ends at once on a tap)."""
    keyframes: bool
    """PLI/FIR reach a pre-encoded source or the server's publisher."""
    encoder_cap: bool
    """A room's video bitrate cap holds against REMB."""
    rtcp_taps: bool
    """RTP/RTCP metering for the bandwidth monitors and receive counters."""
    setup_once: bool
    """One DTLS certificate and OpenSSL context per process, interface addresses cached."""
    fast_srtp: bool
    """SRTP and UDP writes with less Python per packet (pylibsrtp's session buffer)."""
    aiortc: str
    aioice: str

    @property
    def tested(self) -> bool:
        """Whether the installed minors are the ones the fast paths were written against."""
        return _minor(self.aiortc) == TESTED["aiortc"] and _minor(self.aioice) == TESTED["aioice"]

    def paths(self) -> dict[str, bool]:
        """The fast-path flags by name."""
        return {f.name: bool(getattr(self, f.name)) for f in fields(self) if f.type in ("bool", bool)}

    @property
    def all_on(self) -> bool:
        return all(self.paths().values())


def _probe(pc: RTCPeerConnection) -> FastPaths:
    """Probe a throw-away peer connection: a transceiver per kind, never negotiated.

    The ICE-level parts of ``direct_send`` and ``lean_intake`` (aioice's nominated pair,
    ``data_received``) exist from creation, as in a live leg before it connects."""
    video = pc.addTransceiver("video", direction="sendrecv")
    audio = pc.addTransceiver("audio", direction="sendrecv")
    sender, receiver = video.sender, video.receiver
    return FastPaths(
        direct_send=direct_send.probe(sender),
        lean_intake=lean_intake.probe(receiver) and lean_intake.hands_bytes(),
        receive_tap=receive_tap.probe(receiver) and receive_tap.probe(audio.receiver),
        tap_threadless=receive_tap.probe_threadless(),
        keyframes=keyframes.probe(sender),
        encoder_cap=encoder_cap.probe(sender),
        rtcp_taps=rtcp_taps.probe(receiver) and rtcp_taps.probe_sender(sender),
        setup_once=setup_once.installed() or setup_once.probe(),
        fast_srtp=fast_srtp.probe_library(),
        aiortc=_version("aiortc"),
        aioice=_version("aioice"),
    )


async def _probe_in_loop() -> FastPaths:
    pc = RTCPeerConnection()
    try:
        return _probe(pc)
    finally:
        await pc.close()


def _probe_all() -> FastPaths:
    """In the running loop when there is one (the peer connection is closed later, it owns
    nothing yet), else in a loop of its own."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        own = asyncio.new_event_loop()
        try:
            return own.run_until_complete(_probe_in_loop())
        finally:
            own.close()
    pc = RTCPeerConnection()
    try:
        return _probe(pc)
    finally:
        task = loop.create_task(pc.close())
        _closing.add(task)
        task.add_done_callback(_closing.discard)


_closing: set[asyncio.Task[Any]] = set()


@functools.cache
def fast_paths() -> FastPaths:
    """The fast paths this process can take (probed once, then cached)."""
    return _probe_all()


def fast_path_gauges(paths: FastPaths | None = None) -> dict[str, int]:
    """Name -> 1/0 per fast path, plus ``tested``: the ``enx_fast_path{name}`` gauge values."""
    paths = paths if paths is not None else fast_paths()
    gauges = {name: int(on) for name, on in paths.paths().items()}
    gauges["tested"] = int(paths.tested)
    return gauges


def log_fast_paths(log: Any, paths: FastPaths | None = None) -> FastPaths:
    """Log ``webrtc_fast_paths``: WARNING when a path is off or the versions are untested
    (the swarm will cost more CPU than BENCHMARKS.md says), DEBUG otherwise."""
    paths = paths if paths is not None else fast_paths()
    fields_ = {**asdict(paths), "tested": paths.tested}
    if paths.all_on and paths.tested:
        log.debug("webrtc_fast_paths", **fields_)
    else:
        off = [name for name, on in paths.paths().items() if not on]
        log.warning("webrtc_fast_paths", off=off, tested_versions=dict(TESTED), **fields_)
    return paths


__all__ = ["TESTED", "FastPaths", "fast_path_gauges", "fast_paths", "log_fast_paths"]
