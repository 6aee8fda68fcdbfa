"""The server's media side: the one module of ``bot.server`` that touches aiortc.

Every publish leg is an aiortc ``RTCPeerConnection`` answering the client's offer recvonly
(VP8 + Opus only); every subscribe leg answers a receive-only offer sendonly.

**Forwarding without decoding.** aiortc's ``RTCRtpReceiver`` reassembles encoded frames in a
jitter buffer on the event loop and hands them to a per-receiver decoder thread. For the
server's own receivers only (per-instance replacements before the receiver starts; no class
is patched, so the bots in the same process keep aiortc's behaviour), :func:`_forward_from`
wraps the jitter buffer so that each complete frame (a VP8 frame, an Opus packet) goes to the
leg's :class:`PacketForwarder` instead, replaces the decoder queue by a probe that counts
anything that would be decoded, and replaces ``receive`` by one that does not start the
decoder thread. :func:`_count_receiver` wraps the RTP and RTCP entry points to count packets
and payload bytes and to feed the bandwidth meters.

The forwarder gives each subscribe leg one :class:`~.forwarding.ForwardTrack` per kind, whose
``recv()`` returns ``av.Packet``: aiortc's sender then packetizes without encoding. Bounded
per-subscriber queues, start at a keyframe, drop to the next keyframe when a subscriber falls
behind: see :mod:`.forwarding`. A stream nobody subscribes to is received, counted and dropped.

**Keyframes.** aiortc ignores PLI/FIR on the packet path; each forwarding subscribe leg's video
sender has its ``_send_keyframe`` replaced (on that instance) so that a subscriber's PLI/FIR
becomes a request to the publisher: the publish leg's receiver sends an RTCP PLI
(``_send_rtcp_pli``) for the publisher's SSRC, at most one per 300 ms. A subscribe leg asks
too when its sender starts reading (the leg is connected), so a live encoder's keyframe
reaches a new subscriber within a fraction of a second.

**The fallback.** If aiortc's receiver internals are not the expected ones (a future aiortc),
or with ``tap_encoded=False``, a leg uses :class:`DecodingForwarder`: aiortc decodes, a
``MediaRelay`` shares the decoded track and each subscribe leg re-encodes it. The server logs
``media_forwarding_decodes`` once; the room view shows ``forwarding: "decoded"`` and
``decoded_frames`` counts.

**How a leg ends.** ``end_reason`` tells a peer's orderly close (DTLS ``close_notify``: aiortc
closes the connection, state ``closed``) from a failure (ICE consent lost, state ``failed``)
and from the server closing it. The official client closes its peer connections *before*
``unpublish``, so a peer close is a normal end, not a media failure.

**Bandwidth.** The same taps feed each publish leg's :class:`~.bandwidth.PublishMonitor`
(sequence numbers, timestamps, arrival times, sizes; the publisher's RTCP sender reports), and
a tap on each subscribe leg's senders feeds its :class:`~.bandwidth.SubscribeMonitor` with the
subscriber's receiver reports. :meth:`MediaServer.bandwidth_tick` judges them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters
from aiortc.rtp import RtcpRrPacket, RtcpSrPacket
from aiortc.sdp import SessionDescription, candidate_from_sdp

from bot.proto import Answer, Candidate, ErrorCode, IceServer
from bot.webrtc.patches.lean_intake import Route, RtpIntake, leanable

from .bandwidth import BandwidthSettings, PublishMonitor, RtpMeter, SubscribeMonitor, Verdict, WindowStats
from .errors import MediaError
from .forwarding import Forwarded, ForwardedStream

log = structlog.get_logger(__name__)

MediaKind = Literal["audio", "video"]
KINDS: tuple[MediaKind, ...] = ("audio", "video")
# The official client rewrites answers listing H264 and Chrome then rejects them
# (PROTOCOL.md section 4): answer VP8 and Opus only.
ALLOWED_MIME = {"audio": "audio/opus", "video": "video/vp8"}
LegState = Literal["new", "connecting", "connected", "failed", "closed"]
EndReason = Literal["peer_closed", "failed", "server_closed"]
CLOCK_RATES = {"audio": 48000, "video": 90000}


@dataclass(kw_only=True)
class Received:
    """What the server received for one kind of one stream."""

    packets: int = 0
    bytes: int = 0  # RTP payload bytes
    frames: int = 0  # complete encoded frames (decoded frames on the fallback path)

    def to_json(self) -> dict[str, int]:
        return {"packets": self.packets, "bytes": self.bytes, "frames": self.frames}


def rtc_configuration(ice_servers: Sequence[IceServer]) -> RTCConfiguration:
    """An explicit (possibly empty) list: aiortc's default would reach out to Google STUN."""
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=s.urls, username=s.username, credential=s.credential) for s in ice_servers
        ]
    )


# --------------------------------------------------------------------------- receive taps

# aiortc internals the tap relies on (name-mangled attributes of RTCRtpReceiver); all are
# checked before a receiver is tapped, and a receiver missing any is left to aiortc.
_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_DECODER_THREAD = "_RTCRtpReceiver__decoder_thread"
_STARTED = "_RTCRtpReceiver__started"
_CODECS = "_RTCRtpReceiver__codecs"
_RTX_SSRC = "_RTCRtpReceiver__rtx_ssrc"
_RTCP_TASK = "_RTCRtpReceiver__rtcp_task"


def _tappable(receiver: RTCRtpReceiver) -> bool:
    """Whether this aiortc's receiver has the internals :func:`_forward_from` replaces."""
    return (
        callable(getattr(getattr(receiver, _JITTER_BUFFER, None), "add", None))
        and isinstance(getattr(receiver, _DECODER_QUEUE, None), queue.Queue)
        and getattr(receiver, _DECODER_THREAD, "missing") is None
        and getattr(receiver, _STARTED, None) is False
        and isinstance(getattr(receiver, _CODECS, None), dict)
        and isinstance(getattr(receiver, _RTX_SSRC, None), dict)
        and callable(getattr(receiver, "_run_rtcp", None))
        and callable(getattr(receiver, "_send_rtcp_pli", None))
        and callable(getattr(receiver, "_handle_rtp_packet", None))
    )


class _FrameTap:
    """Stands in for one receiver's jitter buffer: every encoded frame the buffer completes
    goes to ``sink`` (bytes, RTP timestamp) instead of back to the receiver, which then has
    nothing to decode. Remembers the sender's SSRC (the target of a PLI)."""

    def __init__(self, inner: Any, received: Received, sink: Callable[[bytes, int], None]) -> None:
        self._inner = inner
        self._received = received
        self._sink = sink
        self.ssrc: int | None = None

    def add(self, packet: Any) -> tuple[bool, None]:
        pli, frame = self._inner.add(packet)
        self.ssrc = packet.ssrc
        if frame is not None:
            self._received.frames += 1
            self._sink(frame.data, frame.timestamp)
        return pli, None

    def restart(self) -> None:
        """Start over with an empty buffer of the same shape (after a lean run: the packets
        that went past it must not read as a gap)."""
        inner = self._inner
        prefetch, video = getattr(inner, "_prefetch", 0), getattr(inner, "_is_video", False)
        self._inner = type(inner)(capacity=inner.capacity, prefetch=prefetch, is_video=video)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _DecoderQueueProbe(queue.Queue[Any]):
    """Stands in for a forwarding receiver's decoder queue: counts what would be decoded.
    Nothing should ever arrive (no decoder thread runs); the room view shows the count."""

    def __init__(self) -> None:
        super().__init__()
        self.frames = 0

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is not None:
            self.frames += 1


def _forward_from(
    receiver: RTCRtpReceiver, received: Received, sink: Callable[[bytes, int], None]
) -> _FrameTap:
    """Make this one receiver hand its encoded frames to ``sink`` and never decode.

    Three attributes of this instance are replaced before it starts (no class is touched):
    the jitter buffer (a :class:`_FrameTap` around it), the decoder queue (a probe) and
    ``receive``, which does what aiortc's does (codecs, RTX mapping, registration with the
    transport, the RTCP task) except start the decoder thread. Everything else (RTCP
    reports, NACKs, PLIs on loss, REMB) stays aiortc's.
    """
    tap = _FrameTap(getattr(receiver, _JITTER_BUFFER), received, sink)
    setattr(receiver, _JITTER_BUFFER, tap)
    setattr(receiver, _DECODER_QUEUE, _DecoderQueueProbe())

    async def receive(parameters: RTCRtpReceiveParameters) -> None:
        if getattr(receiver, _STARTED):
            return
        codecs = getattr(receiver, _CODECS)
        for codec in parameters.codecs:
            codecs[codec.payloadType] = codec
        rtx_ssrc = getattr(receiver, _RTX_SSRC)
        for encoding in parameters.encodings:
            if encoding.rtx:
                rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc
        receiver.transport._register_rtp_receiver(receiver, parameters)
        setattr(receiver, _RTCP_TASK, asyncio.ensure_future(receiver._run_rtcp()))
        setattr(receiver, _STARTED, True)

    receiver.receive = receive  # type: ignore[method-assign]
    return tap


def _count_receiver(
    receiver: RTCRtpReceiver,
    received: Received,
    meter: RtpMeter | None = None,
    learn: Callable[[int], None] | None = None,
) -> None:
    """Count packets and payload bytes on this one receiver; feed ``meter`` every RTP packet
    and the sender's RTCP sender reports; tell ``learn`` each packet's SSRC (the lean intake
    learns its routes from aiortc's)."""
    handle_rtp = getattr(receiver, "_handle_rtp_packet", None)
    if handle_rtp is not None:

        async def counting(packet: Any, arrival_time_ms: int) -> None:
            size = len(packet.payload)
            received.packets += 1
            received.bytes += size
            if meter is not None:
                meter.on_rtp(packet.ssrc, packet.sequence_number, packet.timestamp, arrival_time_ms, size)
            await handle_rtp(packet, arrival_time_ms=arrival_time_ms)
            if learn is not None:
                learn(packet.ssrc)

        receiver._handle_rtp_packet = counting  # type: ignore[method-assign]
    handle_rtcp = getattr(receiver, "_handle_rtcp_packet", None)
    if handle_rtcp is not None and meter is not None:

        async def reports(packet: Any) -> None:
            if isinstance(packet, RtcpSrPacket):
                info = packet.sender_info
                meter.on_sender_report(packet.ssrc, info.ntp_timestamp, info.octet_count, time.monotonic())
            await handle_rtcp(packet)

        receiver._handle_rtcp_packet = reports  # type: ignore[method-assign]


# --------------------------------------------------------------------------- forwarders


def _discard(data: bytes, timestamp: int) -> None:
    pass


def _never() -> bool:
    return False


ForwardMode = Literal["packets", "decoded"]


class PacketForwarder:
    """Forwards a publish leg's encoded frames to its subscribe legs (see the module docstring).

    ``attach(kind)`` returns a track for a subscribe leg's sender; ``detach(track)`` gives it
    back. ``request_keyframe(kind)`` is a subscriber's PLI/FIR.
    """

    mode: ForwardMode = "packets"

    def __init__(self, on_forward: Callable[[int], None] | None = None) -> None:
        self.streams: dict[str, ForwardedStream] = {}
        self._on_forward = on_forward
        self._probes: list[_DecoderQueueProbe] = []

    def add_source(
        self, kind: MediaKind, receiver: RTCRtpReceiver, received: Received, request: Callable[[int], None]
    ) -> tuple[_FrameTap, Callable[[], bool]]:
        """Tap ``receiver`` (before it starts); ``request(ssrc)`` sends the publisher a PLI.
        Returns the tap and whether that receiver's frames have a subscriber now."""
        if kind in self.streams:  # a second m-line of a kind: counted, never forwarded nor decoded
            tap = _forward_from(receiver, received, _discard)
            self._probes.append(getattr(receiver, _DECODER_QUEUE))
            return tap, _never
        taps: list[_FrameTap] = []

        def ask() -> None:
            if taps and taps[0].ssrc is not None:
                request(taps[0].ssrc)

        stream = ForwardedStream(kind, request=ask, on_forward=self._on_forward)
        taps.append(_forward_from(receiver, received, stream.push))
        self._probes.append(getattr(receiver, _DECODER_QUEUE))
        self.streams[kind] = stream
        return taps[0], lambda: stream.subscribers > 0

    def attach(self, kind: str) -> MediaStreamTrack | None:
        stream = self.streams.get(kind)
        return None if stream is None else stream.track()

    def detach(self, track: MediaStreamTrack) -> None:
        track.stop()

    def request_keyframe(self, kind: str) -> None:
        stream = self.streams.get(kind)
        if stream is not None:
            stream.request_keyframe()

    def subscribers(self, kind: str) -> int:
        stream = self.streams.get(kind)
        return 0 if stream is None else stream.subscribers

    @property
    def decoded_frames(self) -> int:
        """Frames that reached a decoder queue of the tapped receivers (0: nothing decoded)."""
        return sum(p.frames for p in self._probes)

    def forwarded_json(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {k: Forwarded().to_json() for k in KINDS}
        for kind, stream in self.streams.items():
            out[kind] = stream.forwarded.to_json()
        return out

    def close(self) -> None:
        for stream in self.streams.values():
            stream.close()


class _DecodedTrack(MediaStreamTrack):
    """The fallback's view of one published track for one subscribe leg (re-encoded by the
    leg's sender). Counts the frames it hands over (``forwarded``; ``shared``: the stream's)."""

    def __init__(self, kind: str, proxy: MediaStreamTrack, shared: Forwarded) -> None:
        super().__init__()
        self.kind = kind
        self.forwarded = Forwarded()
        self._shared = shared
        self._proxy = proxy

    async def recv(self) -> Any:
        frame = await self._proxy.recv()
        self.forwarded.packets += 1
        self._shared.packets += 1
        return frame

    def stop(self) -> None:
        super().stop()
        self._proxy.stop()


class DecodingForwarder:
    """The fallback, when the receivers cannot be tapped (``tap_encoded=False``, or an aiortc
    whose internals differ): aiortc decodes every received frame, a ``MediaRelay`` shares the
    decoded track, and each subscribe leg's sender re-encodes it (VP8/Opus; its own encoder
    answers PLIs). Counts decoded frames; forwarded bytes are not measured (0)."""

    mode: ForwardMode = "decoded"

    def __init__(self) -> None:
        self._relay = MediaRelay()
        self._sources: dict[str, MediaStreamTrack] = {}
        self._forwarded: dict[str, Forwarded] = {k: Forwarded() for k in KINDS}
        self._attached: set[_DecodedTrack] = set()
        self.decoded_frames = 0

    def add_source(self, kind: str, track: MediaStreamTrack) -> None:
        self._sources[kind] = track

    def counting_proxy(self, kind: str) -> MediaStreamTrack | None:
        source = self._sources.get(kind)
        return None if source is None else self._relay.subscribe(source, buffered=False)

    def attach(self, kind: str) -> MediaStreamTrack | None:
        source = self._sources.get(kind)
        if source is None:
            return None
        track = _DecodedTrack(kind, self._relay.subscribe(source, buffered=False), self._forwarded[kind])
        self._attached.add(track)
        return track

    def detach(self, track: MediaStreamTrack) -> None:
        if isinstance(track, _DecodedTrack) and track in self._attached:
            self._attached.discard(track)
            track.stop()

    def request_keyframe(self, kind: str) -> None:
        """Nothing to do: each subscribe leg's own encoder honours its PLIs."""

    def subscribers(self, kind: str) -> int:
        return sum(1 for t in self._attached if t.kind == kind)

    def forwarded_json(self) -> dict[str, dict[str, int]]:
        return {k: f.to_json() for k, f in self._forwarded.items()}

    def close(self) -> None:
        for track in list(self._attached):
            self.detach(track)


# --------------------------------------------------------------------------- legs


class _Leg:
    """One server-side peer connection answering one client offer."""

    role: str = "leg"

    def __init__(self, stream_id: int, configuration: RTCConfiguration) -> None:
        self.stream_id = stream_id
        self.pc = RTCPeerConnection(configuration)
        self.state: LegState = "new"
        self.end_reason: EndReason | None = None
        self._connected = asyncio.Event()
        self._ended = asyncio.Event()
        self._closing = False
        self.pc.on("connectionstatechange", self._on_state)

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self.state = "connected"
            self._on_connected()
            self._connected.set()
        elif state in ("failed", "closed"):
            if self.end_reason is None:
                if self._closing:
                    self.end_reason = "server_closed"
                else:
                    # aiortc closes the connection itself when the peer's DTLS says
                    # close_notify; ICE consent lost (or DTLS broken) is "failed"
                    self.end_reason = "peer_closed" if state == "closed" else "failed"
            self.state = "failed" if self.end_reason == "failed" else "closed"
            self._ended.set()
            self._connected.set()  # wake waiters; they check ``state``
        elif state == "connecting" and self.state == "new":
            self.state = "connecting"

    def _on_connected(self) -> None:
        """Hook: the media is up."""

    @property
    def closed_by_server(self) -> bool:
        return self._closing

    async def _apply_offer(self, sdp: str, prepare: Callable[[list[str]], None]) -> None:
        """Pre-create the transceivers of the offered kinds (``prepare``), then apply the offer.

        Codec preferences only count if set before ``setRemoteDescription`` negotiates.
        """
        try:
            parsed = SessionDescription.parse(sdp)
        except Exception as exc:  # aiortc's parser raises whatever the text trips on
            raise MediaError(f"offer SDP does not parse: {exc!r}") from None
        kinds: list[str] = [media.kind for media in parsed.media if media.kind in KINDS]
        if not kinds:
            raise MediaError("offer has no audio or video m-line")
        prepare(kinds)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:  # OperationError (no common codec), ValueError, ...
            raise MediaError(f"offer refused: {exc}") from None

    async def answer(self) -> Answer:
        """Create and apply the answer; its SDP carries all server candidates."""
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        local = self.pc.localDescription
        return Answer(sdp=local.sdp, media=media_summary(local.sdp))

    async def add_candidate(self, candidate: Candidate) -> None:
        """A trickled client candidate (``a=candidate:...`` or ``candidate:...``)."""
        line = candidate.candidate.strip()
        line = line.removeprefix("a=").removeprefix("candidate:")
        try:
            ice = candidate_from_sdp(line)
        except (AssertionError, ValueError, IndexError):
            raise MediaError(
                f"candidate does not parse: {line[:80]!r}", ErrorCode.MALFORMED_REQUEST
            ) from None
        ice.sdpMid = candidate.sdp_mid
        ice.sdpMLineIndex = candidate.sdp_mline_index
        try:
            await self.pc.addIceCandidate(ice)
        except Exception as exc:  # aioice refuses e.g. unresolvable hosts
            raise MediaError(f"candidate refused: {exc}", ErrorCode.MALFORMED_REQUEST) from None

    async def wait_connected(self) -> bool:
        """Until the leg is connected (True) or has ended (False)."""
        await self._connected.wait()
        return self.state == "connected"

    async def wait_ended(self) -> None:
        await self._ended.wait()

    async def aclose(self) -> None:
        """Close the peer connection (idempotent)."""
        self._closing = True
        if self.end_reason is None:
            self.end_reason = "server_closed"
        # shielded: a cancelled caller must not leave the ICE/DTLS transports running
        await asyncio.shield(self.pc.close())
        self.state = "closed"
        self._ended.set()
        self._connected.set()


class PublishLeg(_Leg):
    """Receives a client's published audio/video, counts what arrives and forwards it."""

    role = "publish"

    def __init__(
        self,
        stream_id: int,
        configuration: RTCConfiguration,
        *,
        tap_encoded: bool = True,
        lean_intake: bool = True,
        bandwidth: BandwidthSettings | None = None,
        on_forward: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(stream_id, configuration)
        self.received: dict[str, Received] = {k: Received() for k in KINDS}
        self.intake: RtpIntake | None = RtpIntake() if lean_intake else None
        """Counts what nobody subscribes to without aiortc's receive path
        (:mod:`bot.webrtc.patches.lean_intake`)."""
        self.forwarder: PacketForwarder | DecodingForwarder = (
            PacketForwarder(on_forward) if tap_encoded else DecodingForwarder()
        )
        self.monitor = PublishMonitor(bandwidth or BandwidthSettings(), time.monotonic())
        self.keyframe_requests_sent = 0
        """PLIs sent to the publisher on behalf of subscribers."""
        self._counters: list[asyncio.Task[None]] = []
        self._rtcp_tasks: set[asyncio.Task[None]] = set()

    def _on_connected(self) -> None:
        self.monitor.detector.reset(time.monotonic())
        if self.intake is not None and isinstance(self.forwarder, PacketForwarder):
            receivers = [t.receiver for t in self.pc.getTransceivers()]
            if not (receivers and self.intake.install(receivers[0])):
                self.intake = None

    async def accept_offer(self, sdp: str) -> None:
        def prepare(kinds: list[str]) -> None:
            transceivers = []
            for kind in kinds:
                transceiver = self.pc.addTransceiver(kind, direction="recvonly")
                transceiver.setCodecPreferences(_preferred(RTCRtpReceiver.getCapabilities(kind)))
                transceivers.append(transceiver)
            forwarder = self.forwarder
            tappable = all(_tappable(t.receiver) for t in transceivers)
            if isinstance(forwarder, PacketForwarder) and not tappable:
                forwarder = self.forwarder = DecodingForwarder()
            intake = self.intake
            if intake is not None and not (
                isinstance(forwarder, PacketForwarder) and all(leanable(t.receiver) for t in transceivers)
            ):
                intake = self.intake = None
            for transceiver in transceivers:
                kind = _kind(transceiver.kind)
                receiver = transceiver.receiver
                meter = self.monitor.meters[kind]
                learn = None
                if isinstance(forwarder, PacketForwarder):
                    tap, subscribed = forwarder.add_source(
                        kind, receiver, self.received[kind], functools.partial(self._send_pli, receiver)
                    )
                    if intake is not None:
                        route = Route(
                            kind,
                            receiver,
                            self.received[kind],
                            on_rtp=meter.on_rtp,
                            wants_full=subscribed,
                            restart=tap.restart,
                        )
                        learn = functools.partial(intake.learn, route=route)
                _count_receiver(receiver, self.received[kind], meter, learn)

        await self._apply_offer(sdp, prepare)
        forwarder = self.forwarder
        if isinstance(forwarder, DecodingForwarder):
            for transceiver in self.pc.getTransceivers():
                track = transceiver.receiver.track
                if track is None or transceiver.kind not in KINDS:
                    continue
                forwarder.add_source(transceiver.kind, track)
                self._counters.append(
                    asyncio.create_task(
                        self._count_decoded(forwarder, transceiver.kind),
                        name=f"count-decoded-{self.stream_id}-{transceiver.kind}",
                    )
                )

    def _send_pli(self, receiver: RTCRtpReceiver, ssrc: int) -> None:
        """Ask the publisher for a keyframe (an RTCP PLI from its receiver)."""
        if self.state != "connected":
            return
        self.keyframe_requests_sent += 1
        task = asyncio.create_task(receiver._send_rtcp_pli(ssrc), name=f"pli-{self.stream_id}")
        self._rtcp_tasks.add(task)
        task.add_done_callback(self._rtcp_done)

    def _rtcp_done(self, task: asyncio.Task[None]) -> None:
        self._rtcp_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("keyframe_request_failed", stream_id=self.stream_id, exc_info=task.exception())

    async def _count_decoded(self, forwarder: DecodingForwarder, kind: str) -> None:
        proxy = forwarder.counting_proxy(kind)
        if proxy is None:
            return
        received = self.received[kind]
        with contextlib.suppress(MediaStreamError):
            while True:
                await proxy.recv()
                received.frames += 1
                forwarder.decoded_frames += 1

    @property
    def decoding(self) -> dict[str, bool]:
        """Per kind, whether this leg's received frames are being decoded (fallback only)."""
        decoded = self.forwarder.mode == "decoded"
        kinds = {t.kind for t in self.pc.getTransceivers()}
        return {k: decoded and k in kinds for k in KINDS}

    @property
    def decoded_frames(self) -> int:
        """Frames of this leg that went through a decoder (0 on the forwarding path)."""
        return self.forwarder.decoded_frames

    def received_json(self) -> dict[str, dict[str, int]]:
        return {k: r.to_json() for k, r in self.received.items()}

    def forwarded_json(self) -> dict[str, dict[str, int]]:
        return self.forwarder.forwarded_json()

    async def aclose(self) -> None:
        if self.intake is not None:
            self.intake.uninstall()
        self.forwarder.close()
        await super().aclose()
        tasks = [*self._counters, *self._rtcp_tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._counters.clear()
        self._rtcp_tasks.clear()


class SubscribeLeg(_Leg):
    """Sends one published stream to one subscriber (tracks from the publisher's forwarder).

    On the forwarding path its video sender's keyframe requests (the subscriber's PLI/FIR,
    which aiortc would answer by forcing its encoder) go to the publisher instead.
    """

    role = "subscribe"

    def __init__(
        self,
        stream_id: int,
        client_id: str,
        source: PublishLeg,
        configuration: RTCConfiguration,
        *,
        bandwidth: BandwidthSettings | None = None,
    ) -> None:
        super().__init__(stream_id, configuration)
        self.client_id = client_id
        self.source = source
        self.monitor = SubscribeMonitor(bandwidth or BandwidthSettings(), time.monotonic())
        self._tracks: list[MediaStreamTrack] = []

    def _on_connected(self) -> None:
        self.monitor.detector.reset(time.monotonic())

    async def accept_offer(self, sdp: str) -> None:
        forwarder = self.source.forwarder

        def prepare(kinds: list[str]) -> None:
            for kind in kinds:
                track = forwarder.attach(kind)
                if track is not None:
                    self._tracks.append(track)
                transceiver = self.pc.addTransceiver(track or kind, direction="sendonly")
                transceiver.setCodecPreferences(_preferred(RTCRtpSender.getCapabilities(kind)))
                _tap_sender(transceiver.sender, kind, self.monitor)
                if forwarder.mode == "packets" and track is not None and kind == "video":
                    _forward_keyframe_requests(transceiver.sender, forwarder, kind)

        await self._apply_offer(sdp, prepare)

    def forwarded_json(self) -> dict[str, dict[str, int]]:
        """What this leg's senders took, per kind."""
        out = {k: Forwarded() for k in KINDS}
        for track in self._tracks:
            mine = getattr(track, "forwarded", None)
            if isinstance(mine, Forwarded) and track.kind in out:
                total = out[track.kind]
                total.packets += mine.packets
                total.bytes += mine.bytes
                total.dropped += mine.dropped
        return {k: f.to_json() for k, f in out.items()}

    async def aclose(self) -> None:
        for track in self._tracks:
            self.source.forwarder.detach(track)
        await super().aclose()


def _forward_keyframe_requests(
    sender: RTCRtpSender, forwarder: PacketForwarder | DecodingForwarder, kind: str
) -> None:
    """This one sender's PLI/FIR handling (``_send_keyframe``) asks the publisher instead."""

    def send_keyframe() -> None:
        forwarder.request_keyframe(kind)

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]


def _kind(kind: str) -> MediaKind:
    if kind == "audio":
        return "audio"
    if kind == "video":
        return "video"
    raise MediaError(f"unexpected media kind {kind!r}")


def _tap_sender(sender: RTCRtpSender, kind: str, monitor: SubscribeMonitor) -> None:
    """Feed ``monitor`` the receiver reports the subscriber sends about this sender's stream."""
    handle_rtcp = getattr(sender, "_handle_rtcp_packet", None)
    if handle_rtcp is None:
        return
    clock_rate = CLOCK_RATES.get(kind, 90000)

    async def reports(packet: Any) -> None:
        if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            now = time.monotonic()
            for report in packet.reports:
                if report.ssrc == sender._ssrc:
                    monitor.on_receiver_report(
                        report.ssrc,
                        clock_rate,
                        report.packets_lost,
                        report.highest_sequence,
                        report.jitter,
                        now,
                    )
        await handle_rtcp(packet)

    sender._handle_rtcp_packet = reports  # type: ignore[method-assign]


def _preferred(capabilities: Any) -> list[Any]:
    return [c for c in capabilities.codecs if c.mimeType.lower() in ALLOWED_MIME.values()]


def media_summary(sdp: str) -> list[dict[str, Any]]:
    """``msg.media`` of an answer: the codecs of each m-line (the official client needs it)."""
    out: list[dict[str, Any]] = []
    for media in SessionDescription.parse(sdp).media:
        if media.kind not in KINDS:
            continue
        out.append(
            {
                "media": media.kind,
                "codecs": [
                    {
                        "name": c.mimeType.split("/", 1)[1],
                        "payload": c.payloadType,
                        "rate": c.clockRate,
                    }
                    for c in media.rtp.codecs
                ],
            }
        )
    return out


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True, kw_only=True)
class BandwidthChange:
    """A leg's detector changed its verdict. ``subscriber`` is set for a subscribe leg."""

    room_id: str
    stream_id: int
    verdict: Verdict
    stats: WindowStats | None
    reasons: tuple[str, ...] = ()
    subscriber: str | None = None


class MediaServer:
    """All legs of one room server, keyed by room and stream (and subscriber).

    The server's own peer connections gather host candidates only (``ice_servers`` is empty
    unless given): a relay-only client reaches them through its TURN relay."""

    def __init__(
        self,
        *,
        ice_servers: Iterable[IceServer] = (),
        tap_encoded: bool = True,
        lean_intake: bool = True,
        bandwidth: BandwidthSettings | None = None,
    ) -> None:
        self._ice_servers = tuple(ice_servers)
        self._tap_encoded = tap_encoded
        self._lean_intake = lean_intake
        self.bandwidth = bandwidth or BandwidthSettings()
        self.forwarded = Forwarded()
        """Everything forwarded by this server, closed legs included (for the metrics)."""
        self._publish: dict[tuple[str, int], PublishLeg] = {}
        self._subscribe: dict[tuple[str, str, int], SubscribeLeg] = {}
        self._fallback_logged = False

    def _on_forward(self, size: int) -> None:
        self.forwarded.packets += 1
        self.forwarded.bytes += size

    def _configuration(self) -> RTCConfiguration:
        return rtc_configuration(self._ice_servers)

    # ------------------------------------------------------------------ publish legs

    async def open_publish(self, room_id: str, stream_id: int, sdp: str) -> PublishLeg:
        """A new publish leg for the offer; a previous leg of that stream is replaced."""
        await self.close_publish(room_id, stream_id)
        leg = PublishLeg(
            stream_id,
            self._configuration(),
            tap_encoded=self._tap_encoded,
            lean_intake=self._lean_intake,
            bandwidth=self.bandwidth,
            on_forward=self._on_forward,
        )
        try:
            await leg.accept_offer(sdp)
        except MediaError:
            await leg.aclose()
            raise
        if leg.forwarder.mode == "decoded" and not self._fallback_logged:
            self._fallback_logged = True
            log.warning(
                "media_forwarding_decodes",
                reason="tap_encoded=False" if not self._tap_encoded else "aiortc receiver internals differ",
                detail="subscribers get decoded and re-encoded media (MediaRelay); CPU heavy",
            )
        self._publish[(room_id, stream_id)] = leg
        return leg

    def publish_leg(self, room_id: str, stream_id: int) -> PublishLeg | None:
        return self._publish.get((room_id, stream_id))

    async def close_publish(self, room_id: str, stream_id: int, leg: PublishLeg | None = None) -> None:
        """Close a publish leg and every subscribe leg fed by it (``leg``: only if current)."""
        current = self._publish.get((room_id, stream_id))
        if current is None or (leg is not None and current is not leg):
            return
        del self._publish[(room_id, stream_id)]
        for key in [k for k, s in self._subscribe.items() if s.source is current]:
            await self._subscribe.pop(key).aclose()
        await current.aclose()

    def received(self, room_id: str, stream_id: int) -> dict[str, dict[str, int]]:
        leg = self._publish.get((room_id, stream_id))
        if leg is None:
            return {k: Received().to_json() for k in KINDS}
        return leg.received_json()

    def forwarding_view(self, room_id: str, stream_id: int) -> dict[str, Any]:
        """The room view's forwarding fields of one stream: ``forwarded`` per kind (all of
        its subscribers, closed legs included), ``subscribers`` (connected subscribe legs),
        ``decoded_frames`` (0 on the forwarding path), ``forwarding`` (``packets`` or the
        ``decoded`` fallback), ``keyframe_requests`` (PLIs sent to the publisher) and
        ``lean_packets`` (RTP counted by the lean intake,
        :mod:`bot.webrtc.patches.lean_intake`; ``null`` where it is off)."""
        leg = self._publish.get((room_id, stream_id))
        if leg is None:
            return {
                "forwarded": {k: Forwarded().to_json() for k in KINDS},
                "subscribers": 0,
                "decoded_frames": 0,
                "forwarding": None,
                "keyframe_requests": 0,
                "lean_packets": None,
            }
        subscribers = sum(1 for s in self._subscribe.values() if s.source is leg and s.state == "connected")
        return {
            "forwarded": leg.forwarded_json(),
            "subscribers": subscribers,
            "decoded_frames": leg.decoded_frames,
            "forwarding": leg.forwarder.mode,
            "keyframe_requests": leg.keyframe_requests_sent,
            "lean_packets": None if leg.intake is None else leg.intake.lean_packets,
        }

    # ------------------------------------------------------------------ subscribe legs

    async def open_subscribe(self, room_id: str, client_id: str, stream_id: int, sdp: str) -> SubscribeLeg:
        source = self._publish.get((room_id, stream_id))
        if source is None:
            raise MediaError(f"stream {stream_id} has no media", ErrorCode.STREAM_NOT_FOUND)
        await self.close_subscribe(room_id, client_id, stream_id)
        leg = SubscribeLeg(stream_id, client_id, source, self._configuration(), bandwidth=self.bandwidth)
        try:
            await leg.accept_offer(sdp)
        except MediaError:
            await leg.aclose()
            raise
        self._subscribe[(room_id, client_id, stream_id)] = leg
        return leg

    def subscribe_leg(self, room_id: str, client_id: str, stream_id: int) -> SubscribeLeg | None:
        return self._subscribe.get((room_id, client_id, stream_id))

    def subscriptions(self, room_id: str, client_id: str) -> list[SubscribeLeg]:
        return [leg for (r, c, _), leg in self._subscribe.items() if r == room_id and c == client_id]

    async def close_subscribe(
        self, room_id: str, client_id: str, stream_id: int, leg: SubscribeLeg | None = None
    ) -> None:
        current = self._subscribe.get((room_id, client_id, stream_id))
        if current is None or (leg is not None and current is not leg):
            return
        del self._subscribe[(room_id, client_id, stream_id)]
        await current.aclose()

    # ------------------------------------------------------------------ bulk

    async def close_client(self, room_id: str, client_id: str, stream_ids: Iterable[int]) -> None:
        """Everything a leaving participant owned: its publish and subscribe legs."""
        for stream_id in stream_ids:
            await self.close_publish(room_id, stream_id)
        await self.close_subscriptions(room_id, client_id)

    async def close_subscriptions(self, room_id: str, client_id: str) -> None:
        """Every subscribe leg of one participant (a rejoin subscribes again)."""
        for key in [k for k in self._subscribe if k[0] == room_id and k[1] == client_id]:
            await self._subscribe.pop(key).aclose()

    # ------------------------------------------------------------------ bandwidth

    def bandwidth_tick(self, now: float) -> list[BandwidthChange]:
        """Sample and judge every connected leg; the verdicts that changed."""
        changes: list[BandwidthChange] = []
        for (room_id, stream_id), leg in list(self._publish.items()):
            if leg.state != "connected":
                continue
            verdict = leg.monitor.tick(now)
            if verdict is not None:
                detector = leg.monitor.detector
                changes.append(
                    BandwidthChange(
                        room_id=room_id,
                        stream_id=stream_id,
                        verdict=verdict,
                        stats=detector.last,
                        reasons=tuple(detector.reasons),
                    )
                )
        for (room_id, client_id, stream_id), sub in list(self._subscribe.items()):
            if sub.state != "connected":
                continue
            verdict = sub.monitor.tick(now)
            if verdict is not None:
                detector = sub.monitor.detector
                changes.append(
                    BandwidthChange(
                        room_id=room_id,
                        stream_id=stream_id,
                        verdict=verdict,
                        stats=detector.last,
                        reasons=tuple(detector.reasons),
                        subscriber=client_id,
                    )
                )
        return changes

    def reset_detectors(self, room_id: str, stream_ids: Iterable[int]) -> None:
        """Judge these publish legs afresh (after an injected verdict)."""
        now = time.monotonic()
        for stream_id in stream_ids:
            leg = self._publish.get((room_id, stream_id))
            if leg is not None:
                leg.monitor.detector.reset(now)

    def bandwidth_view(self, room_id: str, stream_id: int) -> dict[str, Any] | None:
        """The publish leg's last window and verdict (for the room view)."""
        leg = self._publish.get((room_id, stream_id))
        if leg is None:
            return None
        detector = leg.monitor.detector
        return {
            "state": "low" if detector.low else "ok",
            "reasons": list(detector.reasons),
            "window": None if detector.last is None else detector.last.to_json(),
        }

    @property
    def leg_count(self) -> int:
        return len(self._publish) + len(self._subscribe)

    def connected_legs(self) -> tuple[int, int]:
        """(publish legs, subscribe legs) whose media is up now."""
        publish = sum(1 for leg in list(self._publish.values()) if leg.state == "connected")
        subscribe = sum(1 for leg in list(self._subscribe.values()) if leg.state == "connected")
        return publish, subscribe

    async def aclose(self) -> None:
        """Close every peer connection (idempotent)."""
        subscribe, self._subscribe = list(self._subscribe.values()), {}
        publish, self._publish = list(self._publish.values()), {}
        for leg in [*subscribe, *publish]:
            try:
                await leg.aclose()
            except Exception:
                log.exception("media_leg_close_failed", stream_id=leg.stream_id, role=leg.role)
