"""The one module that wraps aiortc: a send-only publish leg and receive-only subscribe legs.

aiortc's camelCase API stops here; the rest of the SDK sees snake_case methods taking and
returning SDP strings and ``bot.proto`` candidates. aiortc gathers every candidate before
``setLocalDescription`` returns, so the offer already carries them all (PROTOCOL.md section 4:
send only the end marker after the answer).

The reaches into aiortc/aioice internals (each on one object only, each with a fallback) are
``bot.webrtc``'s patches: the selected ICE pair, the capped VP8 encoder and the REMB estimator
drop (``encoder_cap``), the keyframe hook on PLI/FIR (``keyframes``), a shared source's direct
send (``direct_send``), a subscribe receiver's frame tap (``receive_tap``), its RTP meter
(``rtcp_taps``) and the lean intake (``lean_intake``).

Liveness uses only public statistics: the media server's RTCP receiver reports
(``remote-inbound-rtp``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.sdp import SessionDescription

from bot.media import EncodedSink, PacketStream, is_keyframe
from bot.proto import Candidate, IceServer
from bot.proto.events import MediaKind
from bot.webrtc import IceEndpoint, IcePair, parse_candidate, selected_pair
from bot.webrtc.patches import direct_send, encoder_cap, keyframes, receive_tap, rtcp_taps
from bot.webrtc.patches.direct_send import DirectSender
from bot.webrtc.patches.encoder_cap import FLOOR_BITRATE_BPS, CappedVp8Encoder
from bot.webrtc.patches.lean_intake import Route, RtpIntake, codec_of, leanable

from .errors import MediaError
from .stats import CLOCK_RATES, DEFAULT_WINDOW_S, RateWindow, ReceiveSample, SendSample

_log = structlog.get_logger(__name__)

PREFERRED_CODECS: Mapping[str, str] = {"audio": "audio/opus", "video": "video/VP8"}
"""What the room's media server answers with (PROTOCOL.md section 4: VP8 and Opus)."""
KINDS: tuple[MediaKind, ...] = ("audio", "video")


def has_relay_candidate(sdp: str) -> bool:
    """Whether an SDP carries a TURN relay candidate (forceTurn gathers nothing else)."""
    return " typ relay" in sdp


def has_any_candidate(sdp: str) -> bool:
    return "a=candidate:" in sdp


def packet_mime_type(track: MediaStreamTrack) -> str | None:
    """The codec of a track that sends already-encoded packets (a ``bot.media.PacketTrack``,
    recognised by its ``mime_type`` and ``request_keyframe``), else None."""
    mime = getattr(track, "mime_type", None)
    if isinstance(mime, str) and callable(getattr(track, "request_keyframe", None)):
        return mime
    return None


def _preferred(kind: str, first_mime: str | None = None) -> list[Any]:
    """Send capabilities with the wanted codec (and its RTX) first, the rest after. The wanted
    codec is the packets' own for a pre-encoded track (aiortc packs with the *negotiated*
    codec), else the room's (VP8/Opus)."""
    codecs = RTCRtpSender.getCapabilities(kind).codecs
    want = (first_mime or PREFERRED_CODECS[kind]).lower()
    first = [c for c in codecs if c.mimeType.lower() == want]
    rtx = [c for c in codecs if c.mimeType.lower().endswith("/rtx")]
    rest = [c for c in codecs if c not in first and c not in rtx]
    return first + rtx + rest


def _receive_codecs(kind: str) -> list[Any]:
    """What a subscribe leg offers: every codec aiortc receives, VP8/Opus first, no RTX.

    Without RTX the media server retransmits (NACK) on the stream's own SSRC, so each
    receiver sees one SSRC: its ``inbound-rtp`` statistics and its PLI target are that one."""
    capabilities = RTCRtpReceiver.getCapabilities(kind)
    codecs = [] if capabilities is None else capabilities.codecs
    want = PREFERRED_CODECS[kind].lower()
    first = [c for c in codecs if c.mimeType.lower() == want]
    rest = [c for c in codecs if c not in first and not c.mimeType.lower().endswith("/rtx")]
    return first + rest


def _answered_codec(answer: str, kind: str) -> str:
    """The first codec of the answer's ``kind`` m-line (lower case, ``video/vp8``), or ''."""
    try:
        media = [m for m in SessionDescription.parse(answer).media if m.kind == kind]
        return str(media[0].rtp.codecs[0].mimeType).lower() if media and media[0].rtp.codecs else ""
    except (ValueError, IndexError, AttributeError):
        return ""


_drop_receive_estimator = encoder_cap.drop_receive_estimator


class _Gate(MediaStreamTrack):
    """Passes the source's frames through while open; while closed it keeps reading and drops
    them, so the sender sends nothing, the source never backs up, and on reopening media
    resumes at the source's current timestamp (no burst, no renegotiation).

    For pre-encoded video (a packet source) reopening asks the source for a keyframe and drops
    packets until one comes: a delta frame whose reference was dropped would show receivers
    broken video until the next keyframe."""

    def __init__(self, source: MediaStreamTrack, is_open: bool) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        self._open = is_open
        self._packets = source.kind == "video" and packet_mime_type(source) is not None
        self._need_keyframe = False
        self.skipped = 0
        """Packets dropped after reopening while waiting for a keyframe."""

    @property
    def is_open(self) -> bool:
        return self._open

    @is_open.setter
    def is_open(self, value: bool) -> None:
        if value and not self._open and self._packets:
            self._need_keyframe = True
            self.source.request_keyframe()  # type: ignore[attr-defined]
        self._open = value

    def admit(self, keyframe: bool) -> bool:
        """Whether a frame (a packet: ``keyframe`` says if it is one) goes out now."""
        if not self._open:
            return False
        if self._need_keyframe:
            if not keyframe:
                self.skipped += 1
                return False
            self._need_keyframe = False
        return True

    async def recv(self) -> Any:
        while True:
            frame = await self.source.recv()
            if self.admit(getattr(frame, "is_keyframe", True)):
                return frame


_CappedVp8Encoder = CappedVp8Encoder
__all__ = [
    "FLOOR_BITRATE_BPS",
    "IceEndpoint",
    "IcePair",
    "PublishLeg",
    "SubscribeLeg",
    "has_any_candidate",
    "has_relay_candidate",
]


def local_path_gone(local_address: str, remote_address: str | None) -> str | None:
    """Why the network path from ``local_address`` (to ``remote_address``) no longer exists,
    or None if it still does: the address is no longer configured here (bind fails), there is
    no route to the remote any more, or the route now leaves from another address. Uses no
    packets: a UDP ``connect`` only consults the routing table."""
    family = socket.AF_INET6 if ":" in local_address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((local_address, 0))
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"local address {local_address} is gone"
        return None  # some other local trouble: not evidence of a path change
    if remote_address is None or (":" in remote_address) != (family == socket.AF_INET6):
        return None
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((remote_address, 9))
            source = str(probe.getsockname()[0])
    except OSError as exc:
        return f"no route to {remote_address} ({exc.strerror or exc})"
    if source != local_address:
        return f"the route to {remote_address} now leaves from {source}, not {local_address}"
    return None


def _ice_server(server: IceServer) -> RTCIceServer:
    return RTCIceServer(urls=server.urls, username=server.username, credential=server.credential)


def _stat(stat: Any, name: str) -> Any:
    return getattr(stat, name, None)


class _Leg:
    """What publish and subscribe legs share: one RTCPeerConnection offering to the media
    server, its candidates, its connection state and its selected ICE pair.

    ``on_failed`` is called once, with a reason, if ICE or DTLS fails or the connection closes
    without :meth:`close` having been called."""

    role = "leg"

    def __init__(
        self,
        *,
        ice_servers: Sequence[IceServer],
        force_turn: bool,
        on_failed: Callable[[str], None] | None,
        log: Any,
    ) -> None:
        self._log = log if log is not None else _log
        self._on_failed = on_failed
        self._closing = False
        self._failed = False
        self._pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=[_ice_server(s) for s in ice_servers],
                iceTransportPolicy=RTCIceTransportPolicy.RELAY if force_turn else RTCIceTransportPolicy.ALL,
            )
        )
        self._pc.on("connectionstatechange", self._on_connection_state)

    @property
    def connection_state(self) -> str:
        return str(self._pc.connectionState)

    async def create_offer(self) -> str:
        """Create and apply the offer; returns its SDP, every gathered candidate included."""
        offer = await self._pc.createOffer()
        await self._pc.setLocalDescription(offer)
        return str(self._pc.localDescription.sdp)

    async def _set_answer(self, sdp: str) -> None:
        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except Exception as exc:  # aiortc raises ValueError/InvalidStateError/... on bad SDP
            raise MediaError(f"the media server's answer was rejected: {exc}") from None

    async def add_remote_candidate(self, candidate: Candidate | None) -> None:
        """A trickled server candidate (``a=candidate:...`` or bare); None ends the list."""
        if candidate is None:
            await self._pc.addIceCandidate(None)
            return
        ice = parse_candidate(candidate.candidate)
        if ice is None:
            self._log.warning("bad_remote_candidate", candidate=candidate.candidate)
            return
        ice.sdpMid = candidate.sdp_mid
        ice.sdpMLineIndex = candidate.sdp_mline_index
        await self._pc.addIceCandidate(ice)

    def selected_pair(self) -> IcePair | None:
        """The nominated candidate pair of the leg's one ICE transport (BUNDLE), or None
        before ICE completes (or if aioice's internals moved)."""
        return selected_pair(self._pc)

    def path_gone(self) -> str | None:
        """Why the local network path the media used is gone (see :func:`local_path_gone`),
        or None if it is still there or unknown."""
        pair = self.selected_pair()
        if pair is None:
            return None
        local = pair.local
        if local.type == "host":
            return local_path_gone(local.address, pair.remote.address)
        if local.related_address:  # srflx/relay: our side is the base address
            return local_path_gone(local.related_address, None)
        return None

    async def _close_pc(self) -> None:
        self._closing = True
        await self._pc.close()

    def _on_connection_state(self) -> None:
        state = self._pc.connectionState
        self._log.debug(f"{self.role}_leg_state", state=state)
        if self._closing or self._failed:
            return
        if state in ("failed", "closed"):
            self._failed = True
            if self._on_failed is not None:
                self._on_failed(f"media connection {state} (ICE/DTLS)")


# --------------------------------------------------------------------------- publish


class PublishLeg(_Leg):
    """A send-only RTCPeerConnection carrying our audio and/or video to the media server.

    A track that sends pre-encoded packets (``bot.media.PacketTrack``) gets its own codec
    first in the offer, the media server's keyframe requests (PLI/FIR) forwarded to its
    source, and a clean restart at a keyframe when its video is unmuted. Its bitrate is the
    source's: the room's video cap and REMB do not apply (:meth:`set_video_cap` says False).
    """

    role = "publish"

    def __init__(
        self,
        *,
        tracks: Mapping[MediaKind, MediaStreamTrack],
        ice_servers: Sequence[IceServer] = (),
        force_turn: bool = False,
        muted: Mapping[MediaKind, bool] | None = None,
        on_failed: Callable[[str], None] | None = None,
        rate_window_s: float = DEFAULT_WINDOW_S,
        log: Any = None,
    ) -> None:
        super().__init__(ice_servers=ice_servers, force_turn=force_turn, on_failed=on_failed, log=log)
        self._gates: dict[MediaKind, _Gate] = {
            kind: _Gate(track, not (muted or {}).get(kind, False)) for kind, track in tracks.items()
        }
        self._packet_mime: dict[MediaKind, str] = {}
        self._senders: dict[MediaKind, RTCRtpSender] = {}
        self.direct: dict[MediaKind, DirectSender | None] = {}
        """Per packet kind, once sending: its direct sender, or None on aiortc's path."""
        for kind, gate in self._gates.items():
            mime = packet_mime_type(gate.source)
            transceiver = self._pc.addTransceiver(gate, direction="sendonly")
            transceiver.setCodecPreferences(_preferred(kind, mime))
            _drop_receive_estimator(transceiver.receiver)
            self._senders[kind] = transceiver.sender
            if mime is not None:
                self._packet_mime[kind] = mime
                self._forward_keyframe_requests(transceiver.sender, gate.source)
                self._send_directly(kind, transceiver.sender, gate)
        self._encoder: _CappedVp8Encoder | None = None
        self._cap_bps: int | None = None
        # liveness: per kind, when it last started sending and how many packets it had sent
        self._active_since: dict[str, float | None] = {}
        self._sent_seen: dict[str, int] = {}
        created = time.monotonic()
        self._samples: dict[MediaKind, RateWindow[SendSample]] = {
            kind: RateWindow(SendSample(at=created), rate_window_s) for kind in self._senders
        }

    @property
    def kinds(self) -> tuple[MediaKind, ...]:
        return tuple(self._senders)

    def _send_directly(self, kind: MediaKind, sender: RTCRtpSender, gate: _Gate) -> None:
        """Shared packets go from the stream to the wire without a task per bot
        (:mod:`bot.webrtc.patches.direct_send`); aiortc's own path where its internals are not
        the expected ones."""
        stream = getattr(gate.source, "stream", None)
        if not isinstance(stream, PacketStream):
            return

        def taken(direct: DirectSender | None) -> None:
            self.direct[kind] = direct

        if direct_send.install(sender, stream, gate.admit, taken) is None:
            self._log.warning("direct_send_unavailable", kind=kind)

    def sends_packets(self, kind: MediaKind) -> bool:
        """Whether ``kind`` comes from a pre-encoded packet source."""
        return kind in self._packet_mime

    def _forward_keyframe_requests(self, sender: RTCRtpSender, source: MediaStreamTrack) -> None:
        """aiortc answers PLI/FIR by calling ``sender._send_keyframe()``, which only flags its
        own encoder: on the packet path there is none, so tell the source too (this sender
        instance only)."""
        log = self._log

        def send_keyframe() -> None:
            try:
                source.request_keyframe()  # type: ignore[attr-defined]
            except Exception:
                log.exception("keyframe_request_failed", kind=source.kind)

        if keyframes.install(sender, send_keyframe) is None:
            self._log.warning("keyframe_forwarding_unavailable", kind=source.kind)

    async def apply_answer(self, sdp: str) -> None:
        await self._set_answer(sdp)
        for kind, mime in self._packet_mime.items():
            answered = _answered_codec(sdp, kind)
            if answered and answered != mime.lower():
                raise MediaError(
                    f"the media server answered {answered} for our {kind}, but the track sends "
                    f"{mime} packets: publish a {answered.split('/')[-1]} source to this room"
                )
        self._install_encoder(sdp)

    def _install_encoder(self, answer: str) -> None:
        """Give the video sender a cappable VP8 encoder before its first frame (aiortc creates
        one lazily, only if none is set; media cannot flow before ICE+DTLS, so none is yet)."""
        sender = self._senders.get("video")
        if sender is None or "video" in self._packet_mime:
            return
        codec = _answered_codec(answer, "video")
        handle = encoder_cap.install(sender) if codec == "video/vp8" else None
        if handle is None:
            self._log.debug("bitrate_cap_unavailable", codec=codec)
            return
        self._encoder = handle.encoder
        self.set_video_cap(self._cap_bps)

    def set_sending(self, kind: MediaKind, sending: bool) -> None:
        """Start or stop sending one kind without renegotiating (see :class:`_Gate`)."""
        gate = self._gates.get(kind)
        if gate is not None:
            gate.is_open = sending

    def is_sending(self, kind: MediaKind) -> bool:
        gate = self._gates.get(kind)
        return gate is not None and gate.is_open

    def set_video_cap(self, bps: int | None) -> bool:
        """Cap (or uncap, with None) the video encoder's bitrate; False when there is no video
        to cap. Applied at once (aiortc rebuilds its encoder when the target moves by more than
        10 %), or when the answer comes; if the answer is not VP8 or aiortc's encoder could not
        be replaced, ``bitrate_cap_unavailable`` is logged and video stays uncapped.

        Pre-encoded video is sent at its source's fixed bitrate (REMB is ignored too): False."""
        self._cap_bps = bps
        if "video" in self._packet_mime:
            return False
        encoder = self._encoder
        if encoder is None:
            return "video" in self._senders  # applied once the answer is in
        encoder.cap_bps = bps
        current = encoder.target_bitrate
        encoder.target_bitrate = current if bps is None else min(current, bps)
        return True

    @property
    def video_bitrate(self) -> int | None:
        """The video encoder's current target (bits per second), when we hold the encoder."""
        return None if self._encoder is None else self._encoder.target_bitrate

    async def media_silence(self) -> float | None:
        """Seconds since the media server last acknowledged media we are sending (RTCP
        receiver reports arrive every 0.5-1.5 s per kind while it receives), or None when
        nothing is being sent. Before the first report it counts half (the link may have died
        before it; a server that sends none gets twice the grace). Call it periodically: a kind
        that just started sending gets a full grace period."""
        now = time.monotonic()
        ages: list[float] = []
        heard = False
        for kind, sender in self._senders.items():
            report = await sender.getStats()
            sent = 0
            last_report: datetime | None = None
            for stat in report.values():
                kind_type = getattr(stat, "type", "")
                if kind_type == "outbound-rtp":
                    sent = int(getattr(stat, "packetsSent", 0))
                elif kind_type == "remote-inbound-rtp":
                    last_report = getattr(stat, "timestamp", None)
            growing = sent > self._sent_seen.get(kind, 0)
            self._sent_seen[kind] = sent
            if not growing:
                self._active_since[kind] = None
                continue
            since = self._active_since.get(kind)
            if since is None:
                since = self._active_since[kind] = now
            if last_report is None:
                ages.append(now - since)
                continue
            heard = True
            report_age = (datetime.now(UTC) - last_report).total_seconds()
            ages.append(min(report_age, now - since))
        if not ages:
            return None
        silence = max(0.0, min(ages))
        if not heard:
            # no report yet: the link may have died before the first one, or the server may
            # not send any; count only half, so the leg gets twice the grace
            return silence / 2
        return silence

    async def sent_packets(self) -> dict[str, int]:
        """RTP packets sent per kind, from the senders' statistics."""
        out: dict[str, int] = {}
        for kind, sender in self._senders.items():
            report = await sender.getStats()
            out[kind] = sum(
                int(getattr(s, "packetsSent", 0))
                for s in report.values()
                if getattr(s, "type", "") == "outbound-rtp"
            )
        return out

    async def sample(self) -> dict[MediaKind, tuple[SendSample, SendSample]]:
        """Per kind: (the sample to compute rates from, a new one), from one ``getStats()``
        of the leg (see :class:`~bot.rtc.stats.RateWindow`)."""
        report = await self._pc.getStats()
        now = time.monotonic()
        found: dict[str, dict[str, Any]] = {kind: {} for kind in self._senders}
        for stat in report.values():
            kind = _stat(stat, "kind")
            if kind not in found:
                continue
            if stat.type == "outbound-rtp":
                found[kind]["packets_sent"] = int(_stat(stat, "packetsSent") or 0)
                found[kind]["bytes_sent"] = int(_stat(stat, "bytesSent") or 0)
            elif stat.type == "remote-inbound-rtp":
                jitter = _stat(stat, "jitter")
                fraction = _stat(stat, "fractionLost")
                found[kind]["packets_lost"] = _stat(stat, "packetsLost")
                found[kind]["fraction_lost"] = None if fraction is None else round(fraction / 256, 4)
                found[kind]["jitter_s"] = None if jitter is None else jitter / CLOCK_RATES[kind]
                found[kind]["round_trip_time"] = _stat(stat, "roundTripTime")
        out: dict[MediaKind, tuple[SendSample, SendSample]] = {}
        for kind in self._senders:
            current = SendSample(at=now, **found[kind])
            out[kind] = (self._samples[kind].add(current), current)
        return out

    async def close(self) -> None:
        """Idempotent. Does not stop the source tracks: their owner does."""
        await self._close_pc()
        for gate in self._gates.values():
            gate.stop()


# --------------------------------------------------------------------------- subscribe

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
                route = Route(self.kind, receiver, counters, on_frame=self._on_lean_frame)

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
    hears ``tally`` per frame instead of ``write``. ``lean=False`` keeps aiortc's path.
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
            transceiver = self._pc.addTransceiver(kind, direction="recvonly")
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
        report = await self._pc.getStats()
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

    async def close(self) -> None:
        """Close the connection, then the sink (on a worker thread: a recording flushes).
        Idempotent."""
        if self.intake is not None:
            self.intake.uninstall()
        await self._close_pc()
        for receiving in self._receiving.values():
            await receiving.stop()
        if not self._sink_closed:
            self._sink_closed = True
            try:
                await asyncio.to_thread(self.sink.close)
            except Exception:
                self._log.exception("sink_close_failed", sink=type(self.sink).__name__)
