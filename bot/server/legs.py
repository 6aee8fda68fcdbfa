"""The server's peer legs: a publish leg answering a client's offer recvonly, a subscribe leg
answering a receive-only offer sendonly (see :mod:`.media` for the whole picture)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import structlog
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtcpRrPacket, RtcpSrPacket
from aiortc.sdp import SessionDescription

from bot.proto import Answer, Candidate, ErrorCode, IceServer
from bot.webrtc import PeerLeg, Route, RtpIntake, keyframes, leanable, parsed_description, rtcp_taps

from .bandwidth import BandwidthSettings, PublishMonitor, RtpMeter, SubscribeMonitor
from .errors import MediaError
from .forwarders import (
    CLOCK_RATES,
    KINDS,
    DecodingForwarder,
    MediaKind,
    PacketForwarder,
    Received,
    _tappable,
)
from .forwarding import Forwarded
from .talkers import VoiceActivity

log = structlog.get_logger("bot.server.media")

# The official client rewrites answers listing H264 and Chrome then rejects them
# (PROTOCOL.md section 4): answer VP8 and Opus only.
ALLOWED_MIME = {"audio": "audio/opus", "video": "video/vp8"}
LegState = Literal["new", "connecting", "connected", "failed", "closed"]
EndReason = Literal["peer_closed", "failed", "server_closed"]


def rtc_configuration(ice_servers: Sequence[IceServer]) -> RTCConfiguration:
    """An explicit (possibly empty) list: aiortc's default would reach out to Google STUN."""
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=s.urls, username=s.username, credential=s.credential) for s in ice_servers
        ]
    )


def _count_receiver(
    receiver: RTCRtpReceiver,
    received: Received,
    meter: RtpMeter | None = None,
    learn: Callable[[int], None] | None = None,
    voice: VoiceActivity | None = None,
) -> None:
    """Count packets and payload bytes on this one receiver; feed ``meter`` every RTP packet
    and the sender's RTCP sender reports; tell ``learn`` each packet's SSRC (the lean intake
    learns its routes from aiortc's)."""
    handle_rtp = rtcp_taps.rtp_handler(receiver)
    counting = reports = None
    if handle_rtp is not None:

        async def counting(packet: Any, arrival_time_ms: int) -> None:
            size = len(packet.payload)
            received.packets += 1
            received.bytes += size
            if meter is not None:
                meter.on_rtp(packet.ssrc, packet.sequence_number, packet.timestamp, arrival_time_ms, size)
            if voice is not None:
                voice.on_packet(size, packet.extensions.audio_level)
            await handle_rtp(packet, arrival_time_ms=arrival_time_ms)
            if learn is not None:
                learn(packet.ssrc)

    handle_rtcp = rtcp_taps.rtcp_handler(receiver)
    if handle_rtcp is not None and meter is not None:

        async def reports(packet: Any) -> None:
            if isinstance(packet, RtcpSrPacket):
                info = packet.sender_info
                meter.on_sender_report(packet.ssrc, info.ntp_timestamp, info.octet_count, time.monotonic())
            await handle_rtcp(packet)

    rtcp_taps.install(receiver, rtp=counting, rtcp=reports)


def _both(meter: RtpMeter, voice: VoiceActivity) -> Callable[[int, int, int, float, int], None]:
    """The lean intake's ``on_rtp`` for audio: the meter, and the talker tally (no level)."""

    def on_rtp(ssrc: int, seq: int, ts: int, arrival_ms: float, size: int) -> None:
        meter.on_rtp(ssrc, seq, ts, arrival_ms, size)
        voice.on_packet(size)

    return on_rtp


# --------------------------------------------------------------------------- legs


class _Leg(PeerLeg):
    """One server-side peer connection answering one client offer."""

    def __init__(self, stream_id: int, configuration: RTCConfiguration) -> None:
        self.stream_id = stream_id
        self.state: LegState = "new"
        self.end_reason: EndReason | None = None
        self._connected = asyncio.Event()
        self._ended = asyncio.Event()
        super().__init__(configuration)

    def on_connection_state(self, state: str) -> None:
        if state == "connected":
            self.state = "connected"
            self._on_connected()
            self._connected.set()
        elif state in ("failed", "closed"):
            if self.end_reason is None:
                if self.closing:
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
        return self.closing

    async def _apply_offer(self, sdp: str, prepare: Callable[[list[str]], None]) -> None:
        """Pre-create the transceivers of the offered kinds (``prepare``), then apply the offer.

        Codec preferences only count if set before ``setRemoteDescription`` negotiates.
        """
        kinds = offered_kinds(sdp)  # aiortc parses the offer once, in setRemoteDescription
        if not kinds:
            raise MediaError("offer has no audio or video m-line")
        prepare(kinds)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:  # OperationError (no common codec), a parse error, ...
            raise MediaError(f"offer refused: {exc!r}") from None

    async def answer(self) -> Answer:
        """Create and apply the answer; its SDP carries all server candidates."""
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        local = self.pc.localDescription
        return Answer(sdp=local.sdp, media=media_summary(parsed_description(self.pc, "local")))

    async def add_candidate(self, candidate: Candidate) -> None:
        """A trickled client candidate (``a=candidate:...`` or ``candidate:...``)."""
        line = candidate.candidate.strip().removeprefix("a=").removeprefix("candidate:")
        try:
            parsed = await self.add_ice_candidate(line, candidate.sdp_mid, candidate.sdp_mline_index)
        except Exception as exc:  # aioice refuses e.g. unresolvable hosts
            raise MediaError(f"candidate refused: {exc}", ErrorCode.MALFORMED_REQUEST) from None
        if not parsed:
            raise MediaError(f"candidate does not parse: {line[:80]!r}", ErrorCode.MALFORMED_REQUEST)

    async def wait_connected(self) -> bool:
        """Until the leg is connected (True) or has ended (False)."""
        await self._connected.wait()
        return self.state == "connected"

    async def wait_ended(self) -> None:
        await self._ended.wait()

    async def aclose(self) -> None:
        """Close the peer connection (idempotent)."""
        self.closing = True
        if self.end_reason is None:
            self.end_reason = "server_closed"
        await self.close_pc()
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
        (:mod:`bot.webrtc.lean_intake`)."""
        self.forwarder: PacketForwarder | DecodingForwarder = (
            PacketForwarder(on_forward) if tap_encoded else DecodingForwarder()
        )
        self.monitor = PublishMonitor(bandwidth or BandwidthSettings(), time.monotonic())
        self.voice = VoiceActivity()
        """Who speaks, for the active talkers (fed on both receive paths)."""
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
                voice = self.voice if kind == "audio" else None
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
                            on_rtp=meter.on_rtp if voice is None else _both(meter, voice),
                            wants_full=subscribed,
                            restart=tap.restart,
                        )
                        learn = functools.partial(intake.learn, route=route)
                _count_receiver(receiver, self.received[kind], meter, learn, voice)

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
        send = keyframes.pli_sender(receiver)
        if send is None:
            return
        task = asyncio.create_task(send(ssrc), name=f"pli-{self.stream_id}")
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

    if keyframes.install(sender, send_keyframe, keep_own=False) is None:
        log.warning("keyframe_forwarding_unavailable", kind=kind)


def _kind(kind: str) -> MediaKind:
    if kind == "audio":
        return "audio"
    if kind == "video":
        return "video"
    raise MediaError(f"unexpected media kind {kind!r}")


def _tap_sender(sender: RTCRtpSender, kind: str, monitor: SubscribeMonitor) -> None:
    """Feed ``monitor`` the receiver reports the subscriber sends about this sender's stream."""
    handle_rtcp = rtcp_taps.rtcp_handler(sender)
    if handle_rtcp is None:
        return
    ssrc = rtcp_taps.ssrc_of(sender)
    clock_rate = CLOCK_RATES.get(kind, 90000)

    async def reports(packet: Any) -> None:
        if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            now = time.monotonic()
            for report in packet.reports:
                if report.ssrc == ssrc:
                    monitor.on_receiver_report(
                        report.ssrc,
                        clock_rate,
                        report.packets_lost,
                        report.highest_sequence,
                        report.jitter,
                        now,
                    )
        await handle_rtcp(packet)

    rtcp_taps.install(sender, rtcp=reports)


def _preferred(capabilities: Any) -> list[Any]:
    return [c for c in capabilities.codecs if c.mimeType.lower() in ALLOWED_MIME.values()]


def offered_kinds(sdp: str) -> list[str]:
    """The audio and video m-lines of an offer, in order (``m=audio 9 UDP/TLS/...``)."""
    kinds: list[str] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            kind = line[2:].split(" ", 1)[0]
            if kind in KINDS:
                kinds.append(kind)
    return kinds


def media_summary(description: SessionDescription | str | None) -> list[dict[str, Any]]:
    """``msg.media`` of an answer: the codecs of each m-line (the official client needs it)."""
    if isinstance(description, str):
        description = SessionDescription.parse(description)
    out: list[dict[str, Any]] = []
    for media in description.media if description is not None else []:
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
