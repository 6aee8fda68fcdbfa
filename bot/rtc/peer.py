"""The one module that wraps aiortc: a send-only publish leg.

aiortc's camelCase API stops here; the rest of the SDK sees snake_case methods taking and
returning SDP strings and ``bot.proto`` candidates. aiortc gathers every candidate before
``setLocalDescription`` returns, so the offer already carries them all (PROTOCOL.md section 4:
send only the end marker after the answer).

Every reach into aiortc/aioice internals is here too, each with a fallback when a future
release renames it: the selected ICE pair (aioice ``Connection._nominated``), the VP8 encoder
whose bitrate a room may cap (``RTCRtpSender.__encoder``). Liveness uses only public
statistics: the media server's RTCP receiver reports (``remote-inbound-rtp``).
"""

from __future__ import annotations

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
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.codecs.vpx import MAX_BITRATE, MIN_BITRATE, Vp8Encoder
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.sdp import SessionDescription, candidate_from_sdp

from bot.proto import Candidate, IceServer
from bot.proto.events import MediaKind

from .errors import MediaError

_log = structlog.get_logger(__name__)

PREFERRED_CODECS: Mapping[str, str] = {"audio": "audio/opus", "video": "video/VP8"}
"""What the room's media server answers with (PROTOCOL.md section 4: VP8 and Opus)."""


def has_relay_candidate(sdp: str) -> bool:
    """Whether an SDP carries a TURN relay candidate (forceTurn gathers nothing else)."""
    return " typ relay" in sdp


def has_any_candidate(sdp: str) -> bool:
    return "a=candidate:" in sdp


def _preferred(kind: str) -> list[Any]:
    """Capabilities with the preferred codec (and its RTX) first, the rest after."""
    codecs = RTCRtpSender.getCapabilities(kind).codecs
    want = PREFERRED_CODECS[kind].lower()
    first = [c for c in codecs if c.mimeType.lower() == want]
    rtx = [c for c in codecs if c.mimeType.lower().endswith("/rtx")]
    rest = [c for c in codecs if c not in first and c not in rtx]
    return first + rtx + rest


class _Gate(MediaStreamTrack):
    """Passes the source's frames through while open; while closed it keeps reading and drops
    them, so the sender sends nothing, the source never backs up, and on reopening media
    resumes at the source's current timestamp (no burst, no renegotiation)."""

    def __init__(self, source: MediaStreamTrack, is_open: bool) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        self.is_open = is_open

    async def recv(self) -> Any:
        while True:
            frame = await self.source.recv()
            if self.is_open:
                return frame


FLOOR_BITRATE_BPS = 50_000
"""The lowest video cap honoured (a room asking for less gets this; ``1`` means stop video)."""
_ENCODER_ATTR = "_RTCRtpSender__encoder"
_TARGET_ATTR = "_Vp8Encoder__target_bitrate"


class _CappedVp8Encoder(Vp8Encoder):
    """aiortc's VP8 encoder with a ceiling. The media server's REMB keeps setting
    ``target_bitrate`` (and aiortc clamps it to 250..1500 kbps): a room's PublisherBandwidth
    cap must hold against both, so the setter applies it after them."""

    cap_bps: int | None = None

    @property
    def target_bitrate(self) -> int:
        return int(getattr(self, _TARGET_ATTR))

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        bitrate = max(MIN_BITRATE, min(bitrate, MAX_BITRATE))
        if self.cap_bps is not None:
            bitrate = max(FLOOR_BITRATE_BPS, min(bitrate, self.cap_bps))
        setattr(self, _TARGET_ATTR, bitrate)


@dataclass(frozen=True, kw_only=True)
class IceEndpoint:
    """One side of the selected ICE candidate pair."""

    type: str
    """``host``, ``srflx``, ``prflx`` or ``relay``."""
    address: str
    port: int
    protocol: str
    related_address: str | None = None
    """For srflx/relay: the base address it was derived from."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "address": self.address,
            "port": self.port,
            "protocol": self.protocol,
            "relatedAddress": self.related_address,
        }


@dataclass(frozen=True, kw_only=True)
class IcePair:
    """The candidate pair a leg's media flows over."""

    local: IceEndpoint
    remote: IceEndpoint

    @property
    def relayed(self) -> bool:
        return self.local.type == "relay" or self.remote.type == "relay"

    def to_dict(self) -> dict[str, Any]:
        return {"local": self.local.to_dict(), "remote": self.remote.to_dict()}


def _endpoint(candidate: Any) -> IceEndpoint:
    return IceEndpoint(
        type=str(candidate.type),
        address=str(candidate.host),
        port=int(candidate.port),
        protocol=str(candidate.transport).lower(),
        related_address=candidate.related_address,
    )


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


class PublishLeg:
    """A send-only RTCPeerConnection carrying our audio and/or video to the media server.

    ``on_failed`` is called once, with a reason, if ICE or DTLS fails or the connection closes
    without :meth:`close` having been called.
    """

    def __init__(
        self,
        *,
        tracks: Mapping[MediaKind, MediaStreamTrack],
        ice_servers: Sequence[IceServer] = (),
        force_turn: bool = False,
        muted: Mapping[MediaKind, bool] | None = None,
        on_failed: Callable[[str], None] | None = None,
        log: Any = None,
    ) -> None:
        self._log = log if log is not None else _log
        self._on_failed = on_failed
        self._closing = False
        self._failed = False
        self._gates: dict[MediaKind, _Gate] = {
            kind: _Gate(track, not (muted or {}).get(kind, False)) for kind, track in tracks.items()
        }
        self._pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=[_ice_server(s) for s in ice_servers],
                iceTransportPolicy=RTCIceTransportPolicy.RELAY if force_turn else RTCIceTransportPolicy.ALL,
            )
        )
        self._pc.on("connectionstatechange", self._on_connection_state)
        self._senders: dict[MediaKind, RTCRtpSender] = {}
        for kind, gate in self._gates.items():
            transceiver = self._pc.addTransceiver(gate, direction="sendonly")
            transceiver.setCodecPreferences(_preferred(kind))
            self._senders[kind] = transceiver.sender
        self._encoder: _CappedVp8Encoder | None = None
        self._cap_bps: int | None = None
        # liveness: per kind, when it last started sending and how many packets it had sent
        self._active_since: dict[str, float | None] = {}
        self._sent_seen: dict[str, int] = {}

    @property
    def kinds(self) -> tuple[MediaKind, ...]:
        return tuple(self._senders)

    @property
    def connection_state(self) -> str:
        return str(self._pc.connectionState)

    async def create_offer(self) -> str:
        """Create and apply the offer; returns its SDP, every gathered candidate included."""
        offer = await self._pc.createOffer()
        await self._pc.setLocalDescription(offer)
        return str(self._pc.localDescription.sdp)

    async def apply_answer(self, sdp: str) -> None:
        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except Exception as exc:  # aiortc raises ValueError/InvalidStateError/... on bad SDP
            raise MediaError(f"the media server's answer was rejected: {exc}") from None
        self._install_encoder(sdp)

    def _install_encoder(self, answer: str) -> None:
        """Give the video sender a cappable VP8 encoder before its first frame (aiortc creates
        one lazily, only if none is set; media cannot flow before ICE+DTLS, so none is yet)."""
        sender = self._senders.get("video")
        if sender is None:
            return
        try:
            media = [m for m in SessionDescription.parse(answer).media if m.kind == "video"]
            codec = media[0].rtp.codecs[0].mimeType.lower() if media and media[0].rtp.codecs else ""
        except (ValueError, IndexError, AttributeError):
            codec = ""
        if codec != "video/vp8" or getattr(sender, _ENCODER_ATTR, "missing") is not None:
            self._log.debug("bitrate_cap_unavailable", codec=codec)
            return
        encoder = _CappedVp8Encoder()
        setattr(sender, _ENCODER_ATTR, encoder)
        self._encoder = encoder
        self.set_video_cap(self._cap_bps)

    async def add_remote_candidate(self, candidate: Candidate | None) -> None:
        """A trickled server candidate (``a=candidate:...`` or bare); None ends the list."""
        if candidate is None:
            await self._pc.addIceCandidate(None)
            return
        text = candidate.candidate.strip()
        text = text.removeprefix("a=").removeprefix("candidate:")
        try:
            ice = candidate_from_sdp(text)
        except (AssertionError, ValueError, IndexError):
            self._log.warning("bad_remote_candidate", candidate=candidate.candidate)
            return
        ice.sdpMid = candidate.sdp_mid
        ice.sdpMLineIndex = candidate.sdp_mline_index
        await self._pc.addIceCandidate(ice)

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
        be replaced, ``bitrate_cap_unavailable`` is logged and video stays uncapped."""
        self._cap_bps = bps
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

    def selected_pair(self) -> IcePair | None:
        """The nominated candidate pair of the leg's one ICE transport (BUNDLE), or None
        before ICE completes (or if aioice's internals moved)."""
        for sender in self._senders.values():
            try:
                connection = sender.transport.transport._connection
                pair = connection._nominated.get(1)
            except AttributeError:
                return None
            if pair is None:
                return None
            return IcePair(local=_endpoint(pair.local_candidate), remote=_endpoint(pair.remote_candidate))
        return None

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

    async def close(self) -> None:
        """Idempotent. Does not stop the source tracks: their owner does."""
        self._closing = True
        await self._pc.close()
        for gate in self._gates.values():
            gate.stop()

    def _on_connection_state(self) -> None:
        state = self._pc.connectionState
        self._log.debug("publish_leg_state", state=state)
        if self._closing or self._failed:
            return
        if state in ("failed", "closed"):
            self._failed = True
            if self._on_failed is not None:
                self._on_failed(f"media connection {state} (ICE/DTLS)")
