"""The one module that wraps aiortc: a send-only publish leg.

aiortc's camelCase API stops here; the rest of the SDK sees snake_case methods taking and
returning SDP strings and ``bot.proto`` candidates. aiortc gathers every candidate before
``setLocalDescription`` returns, so the offer already carries them all (PROTOCOL.md section 4:
send only the end marker after the answer).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.sdp import candidate_from_sdp

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
