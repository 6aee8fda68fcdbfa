"""What the SDK's publish and subscribe legs share: one RTCPeerConnection offering to the media
server, its candidates, its state and its selected ICE pair; the codec preferences.

aiortc's camelCase API stops in ``bot.rtc.legs``; the rest of the SDK sees snake_case methods
taking and returning SDP strings and ``bot.proto`` candidates. aiortc gathers every candidate
before ``setLocalDescription`` returns, so the offer already carries them all (PROTOCOL.md
section 4: send only the end marker after the answer). The reaches into aiortc/aioice internals
are ``bot.webrtc``'s patches.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.sdp import SessionDescription

from bot.proto import Candidate, IceServer, MediaKind
from bot.webrtc import IceEndpoint, IcePair, PeerLeg, encoder_cap

from ..errors import MediaError

_log = structlog.get_logger("bot.rtc.legs")

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


def _answered_codec(answer: SessionDescription | None, kind: str) -> str:
    """The first codec of the answer's ``kind`` m-line (lower case, ``video/vp8``), or ''.
    ``answer``: as aiortc parsed it (:func:`bot.webrtc.parsed_description`), not parsed again."""
    media = [m for m in answer.media if m.kind == kind] if answer is not None else []
    return str(media[0].rtp.codecs[0].mimeType).lower() if media and media[0].rtp.codecs else ""


_drop_receive_estimator = encoder_cap.drop_receive_estimator


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


class _Leg(PeerLeg):
    """What publish and subscribe legs share: one RTCPeerConnection offering to the media
    server (:class:`bot.webrtc.PeerLeg`), its candidates, its state, its selected ICE pair.

    ``on_failed`` is called once, with a reason, if ICE or DTLS fails or the connection closes
    without :meth:`aclose` having been called."""

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
        self._failed = False
        super().__init__(
            RTCConfiguration(
                iceServers=[_ice_server(s) for s in ice_servers],
                iceTransportPolicy=RTCIceTransportPolicy.RELAY if force_turn else RTCIceTransportPolicy.ALL,
                # One ICE transport from the start: with aiortc's default (balanced) the offer
                # gathered one per kind and the answer's BUNDLE closed the second again.
                bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
            )
        )

    async def create_offer(self) -> str:
        """Create and apply the offer; returns its SDP, every gathered candidate included."""
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        return str(self.pc.localDescription.sdp)

    async def _set_answer(self, sdp: str) -> None:
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except Exception as exc:  # aiortc raises ValueError/InvalidStateError/... on bad SDP
            raise MediaError(f"the media server's answer was rejected: {exc}") from None

    async def add_remote_candidate(self, candidate: Candidate | None) -> None:
        """A trickled server candidate (``a=candidate:...`` or bare); None ends the list."""
        if candidate is None:
            await self.end_of_candidates()
        elif not await self.add_ice_candidate(
            candidate.candidate, candidate.sdp_mid, candidate.sdp_mline_index
        ):
            self._log.warning("bad_remote_candidate", candidate=candidate.candidate)

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

    def on_connection_state(self, state: str) -> None:
        self._log.debug(f"{self.role}_leg_state", state=state)
        if self.closing or self._failed:
            return
        if state in ("failed", "closed"):
            self._failed = True
            if self._on_failed is not None:
                self._on_failed(f"media connection {state} (ICE/DTLS)")


__all__ = ["IceEndpoint", "IcePair", "has_any_candidate", "has_relay_candidate", "local_path_gone"]
