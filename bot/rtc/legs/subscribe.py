"""The receive-only subscribe leg (see :class:`SubscribeLeg`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiortc import (
    RTCRtpReceiver,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bot.media import EncodedSink, is_keyframe
from bot.proto import IceServer, MediaKind
from bot.webrtc import Route, RtpIntake, codec_of, keyframes, leanable, receive_tap, rtcp_taps

from ..stats import CLOCK_RATES, DEFAULT_WINDOW_S, RateWindow, ReceiveSample
from .base import KINDS, _drop_receive_estimator, _Leg, _receive_codecs, _stat

_log = structlog.get_logger("bot.rtc.legs")


_LEAN_CODECS = ("video/vp8", "audio/opus")
"""What the lean intake counts on a subscribe leg (it recognises VP8 keyframes; Opus packets
are frames)."""


@dataclass
class ReceiveCounters:
    """What one receiver of a subscribe leg saw (updated on the event loop)."""

    packets: int = 0
    bytes: int | None = 0
    frames: int = 0
    keyframes: int = 0
    keyframe_requests: int = 0
    sink_errors: int = 0
    first_frame_at: float | None = None
    first_keyframe_at: float | None = None
    last_keyframe_at: float | None = None


class _Receiving:
    """One receiver of a subscribe leg: the tap feeding the sink, the counters, the PLI."""

    def __init__(self, kind: MediaKind, receiver: RTCRtpReceiver, sink: EncodedSink, log: Any) -> None:
        self.kind = kind
        self.receiver = receiver
        self.sink = sink
        self.counters = ReceiveCounters()
        self.tapped = False
        self._log = log
        self._ssrc: int | None = None
        self._keyframe_pending = False
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._sink_failed_logged = False

    # -- installing (before the receiver starts: setRemoteDescription starts nothing, but
    # -- ICE+DTLS completion does)

    def install(self, tap: bool, intake: RtpIntake | None = None) -> bool:
        """Meter RTP on this receiver and, with ``tap``, take its encoded frames; returns
        whether frames are tapped (else the leg decodes them with :meth:`read`). With
        ``intake`` (a sink that needs no frame), VP8 and Opus are counted on the lean intake
        once their first packet has come through aiortc's path."""
        handle_rtp = rtcp_taps.rtp_handler(self.receiver)
        if handle_rtp is not None:
            counters = self.counters
            receiver = self.receiver
            route = None
            if intake is not None and leanable(receiver):
                wants = getattr(self.sink, "wants_sample", None)
                if not getattr(self.sink, "samples", True):
                    wants = None  # it could sample, but was not asked to: no call per packet
                route = Route(
                    self.kind,
                    receiver,
                    counters,
                    on_frame=self._on_lean_frame,
                    wants_sample=(lambda: bool(wants(self.kind))) if callable(wants) else None,
                    on_sample=self._on_lean_sample if callable(wants) else None,
                )

            async def metered(packet: Any, arrival_time_ms: int) -> None:
                counters.packets += 1
                if counters.bytes is not None:
                    counters.bytes += len(packet.payload)
                if self._ssrc != packet.ssrc:
                    self._ssrc = packet.ssrc
                if self._keyframe_pending:
                    self._keyframe_pending = False
                    self._send_pli()
                await handle_rtp(packet, arrival_time_ms=arrival_time_ms)
                if (
                    route is not None
                    and intake is not None
                    and packet.ssrc not in intake.routes
                    and codec_of(receiver, packet.payload_type) in _LEAN_CODECS
                ):
                    intake.learn(packet.ssrc, route)
                    _drop_receive_estimator(receiver)  # lean from now on: no REMB to estimate
                    if not intake.installed:
                        intake.install(receiver)

            rtcp_taps.install(self.receiver, rtp=metered)
        else:
            self.counters.bytes = None
        if tap and receive_tap.install(self.receiver, self._on_frame) is not None:
            self.tapped = True
        return self.tapped

    def _on_frame(self, codec: Any, frame: Any) -> None:
        """One reassembled frame (on the event loop, inside aiortc's RTP handling: never raise)."""
        counters = self.counters
        now = time.monotonic()
        try:
            name = str(codec.name)
            data = bytes(frame.data)
            key = self.kind == "audio" or is_keyframe(name, data)
        except Exception:  # a frame aiortc could not have made: count it, drop it
            counters.sink_errors += 1
            return
        counters.frames += 1
        if counters.first_frame_at is None:
            counters.first_frame_at = now
        if key:
            counters.keyframes += 1
            counters.last_keyframe_at = now
            if counters.first_keyframe_at is None:
                counters.first_keyframe_at = now
        try:
            self.sink.write(self.kind, name, data, int(frame.timestamp), int(codec.clockRate), key)
        except Exception:
            counters.sink_errors += 1
            if not self._sink_failed_logged:
                self._sink_failed_logged = True
                self._log.exception("sink_write_failed", kind=self.kind, sink=type(self.sink).__name__)

    def _on_lean_frame(self, keyframe: bool, size: int) -> None:
        """One frame counted on the lean intake (``counters.frames`` is already counted)."""
        counters = self.counters
        now = time.monotonic()
        if counters.first_frame_at is None:
            counters.first_frame_at = now
        if keyframe:
            counters.keyframes += 1
            counters.last_keyframe_at = now
            if counters.first_keyframe_at is None:
                counters.first_keyframe_at = now
        tally = getattr(self.sink, "tally", None)
        if callable(tally):
            tally(self.kind, size, keyframe)

    def _on_lean_sample(self, keyframe: bool, data: bytes) -> None:
        """A frame the sink asked for, reassembled on the lean intake (``sample`` of the sink)."""
        try:
            self.sink.sample(self.kind, data, keyframe)  # type: ignore[attr-defined]
        except Exception:
            self.counters.sink_errors += 1

    # -- keyframes

    def request_keyframe(self) -> None:
        """Ask the sender for a keyframe (an RTCP PLI). Safe from any thread; before the first
        packet (we do not know the stream's SSRC yet) it is sent when that packet comes."""
        if self.kind != "video":
            return
        self._loop.call_soon_threadsafe(self._keyframe_now)

    def _keyframe_now(self) -> None:
        ssrc = self._ssrc
        if ssrc is None:
            sources = self.receiver.getSynchronizationSources()
            ssrc = sources[-1].source if sources else None
        if ssrc is None:
            self._keyframe_pending = True
            return
        self._ssrc = ssrc
        self._send_pli()

    def _send_pli(self) -> None:
        send = keyframes.pli_sender(self.receiver)
        if send is None or self._ssrc is None:
            self._log.debug("keyframe_request_unavailable", kind=self.kind)
            return
        self.counters.keyframe_requests += 1
        task = asyncio.ensure_future(send(self._ssrc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- fallback: aiortc decodes, we count what comes out

    def read(self) -> None:
        track = self.receiver.track
        if track is None or self._reader is not None:
            return
        self._reader = asyncio.create_task(self._read(track), name=f"subscribe-read-{self.kind}")

    async def _read(self, track: MediaStreamTrack) -> None:
        counters = self.counters
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                now = time.monotonic()
                counters.frames += 1
                if counters.first_frame_at is None:
                    counters.first_frame_at = now
                if self.kind == "audio" or getattr(frame, "key_frame", False):
                    counters.keyframes += 1
                    counters.last_keyframe_at = now
                    if counters.first_keyframe_at is None:
                        counters.first_keyframe_at = now

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._reader] if self._reader is not None else [])]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class SubscribeLeg(_Leg):
    """A receive-only RTCPeerConnection bringing one remote stream from the media server.

    **Nothing is decoded unless the sink decodes.** aiortc decodes every received frame on a
    thread per receiver and queues the pictures unbounded until someone reads the track. Here,
    before the receivers start, each receiver's decoder queue is replaced (that receiver only)
    with a tap that hands the reassembled encoded frames to ``sink`` (an
    ``bot.media.EncodedSink``: ``DiscardSink`` counts, ``RecordSink`` muxes, ``FrameSink``
    decodes on its own thread); aiortc's decoder thread ends as soon as it starts. If aiortc's
    internals moved (``tap=False`` forces it), the leg reads its tracks instead (aiortc
    decodes, frames are counted, the sink gets nothing) and ``tapped`` is False.

    :meth:`request_keyframe` sends the publisher's side a PLI (the sink's
    ``request_keyframe``; the SDK also asks once when the leg becomes ready).

    **A sink that needs no frame** (``needs_frames = False``: ``DiscardSink``) gets less still:
    once the first VP8/Opus packet of a kind came through aiortc's path, that kind is counted
    on the lean intake (:mod:`bot.webrtc.patches.lean_intake`: packets, bytes, frames and keyframes from the
    RTP headers, the receiver-report statistics kept; no jitter buffer, no NACK) and the sink
    hears ``tally`` per frame instead of ``write``; a sink that also has ``wants_sample(kind)``
    and ``sample(kind, data, keyframe)`` (the quality probe's; ``samples`` False: not now) gets,
    now and then, one whole frame it asked for (video: a keyframe) from the lean intake.
    ``lean=False`` keeps aiortc's path.
    """

    role = "subscribe"

    def __init__(
        self,
        *,
        kinds: Sequence[MediaKind],
        sink: EncodedSink,
        ice_servers: Sequence[IceServer] = (),
        force_turn: bool = False,
        on_failed: Callable[[str], None] | None = None,
        tap: bool = True,
        lean: bool = True,
        rate_window_s: float = DEFAULT_WINDOW_S,
        log: Any = None,
    ) -> None:
        super().__init__(ice_servers=ice_servers, force_turn=force_turn, on_failed=on_failed, log=log)
        self.sink = sink
        self.intake: RtpIntake | None = (
            RtpIntake() if tap and lean and getattr(sink, "needs_frames", True) is False else None
        )
        """The lean intake, for a sink that needs no frame (:mod:`bot.webrtc.patches.lean_intake`)."""
        self._receiving: dict[MediaKind, _Receiving] = {}
        for kind in KINDS:
            if kind not in kinds:
                continue
            transceiver = self.pc.addTransceiver(kind, direction="recvonly")
            transceiver.setCodecPreferences(_receive_codecs(kind))
            receiving = _Receiving(kind, transceiver.receiver, sink, self._log)
            receiving.install(tap, self.intake)
            self._receiving[kind] = receiving
        self.tapped = bool(self._receiving) and all(r.tapped for r in self._receiving.values())
        created = time.monotonic()
        self._samples: dict[MediaKind, RateWindow[ReceiveSample]] = {
            kind: RateWindow(ReceiveSample(at=created), rate_window_s) for kind in self._receiving
        }
        self._sink_closed = False

    @property
    def kinds(self) -> tuple[MediaKind, ...]:
        return tuple(self._receiving)

    def counters(self, kind: MediaKind) -> ReceiveCounters | None:
        receiving = self._receiving.get(kind)
        return None if receiving is None else receiving.counters

    async def apply_answer(self, sdp: str) -> None:
        await self._set_answer(sdp)
        for receiving in self._receiving.values():
            if not receiving.tapped:
                receiving.read()

    def request_keyframe(self) -> None:
        """Ask for a video keyframe (thread-safe; nothing for an audio-only leg)."""
        receiving = self._receiving.get("video")
        if receiving is not None:
            receiving.request_keyframe()

    def decoder_threads_alive(self) -> dict[MediaKind, bool]:
        """Per kind, whether aiortc's own decoder thread for that receiver is running (always
        False for a tapped leg once media started: the thread ends at once)."""
        out: dict[MediaKind, bool] = {}
        for kind, receiving in self._receiving.items():
            out[kind] = receive_tap.decoder_thread_alive(receiving.receiver)
        return out

    async def sample(self) -> dict[MediaKind, tuple[ReceiveSample, ReceiveSample]]:
        """Per kind: (the sample to compute rates from, a new one), from one ``getStats()``
        of the leg (see :class:`~bot.rtc.stats.RateWindow`)."""
        report = await self.pc.getStats()
        now = time.monotonic()
        found: dict[str, dict[str, Any]] = {kind: {} for kind in self._receiving}
        for stat in report.values():
            kind = _stat(stat, "kind")
            if kind not in found:
                continue
            if stat.type == "inbound-rtp":
                jitter = _stat(stat, "jitter")
                found[kind]["packets_received"] = _stat(stat, "packetsReceived")
                found[kind]["packets_lost"] = _stat(stat, "packetsLost")
                found[kind]["jitter_s"] = None if jitter is None else jitter / CLOCK_RATES[kind]
            elif stat.type == "remote-outbound-rtp":
                found[kind]["remote_packets_sent"] = _stat(stat, "packetsSent")
                found[kind]["remote_bytes_sent"] = _stat(stat, "bytesSent")
        out: dict[MediaKind, tuple[ReceiveSample, ReceiveSample]] = {}
        for kind, receiving in self._receiving.items():
            c = receiving.counters
            current = ReceiveSample(
                at=now,
                packets=c.packets,
                bytes=c.bytes,
                frames=c.frames,
                keyframes=c.keyframes,
                keyframe_requests=c.keyframe_requests,
                **found[kind],
            )
            out[kind] = (self._samples[kind].add(current), current)
        return out

    async def aclose(self) -> None:
        """Close the connection, then the sink (on a worker thread: a recording flushes).
        Idempotent."""
        if self.intake is not None:
            self.intake.uninstall()
        await self.close_pc()
        for receiving in self._receiving.values():
            await receiving.stop()
        if not self._sink_closed:
            self._sink_closed = True
            try:
                await asyncio.to_thread(self.sink.close)
            except Exception:
                self._log.exception("sink_close_failed", sink=type(self.sink).__name__)
