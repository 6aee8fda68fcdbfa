"""What every peer leg (client or server) reads of its RTCPeerConnection: the selected ICE pair
(aioice 0.13 ``Connection._nominated``) and remote candidates in SDP form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiortc import RTCIceCandidate, RTCPeerConnection
from aiortc.sdp import SessionDescription, candidate_from_sdp

from . import _internals as n


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


def selected_pair(pc: RTCPeerConnection) -> IcePair | None:
    """The nominated candidate pair of the connection's one ICE transport (BUNDLE), or None
    before ICE completes (or if aioice's internals moved)."""
    for transceiver in pc.getTransceivers():
        try:
            connection = getattr(transceiver.receiver.transport.transport, n.ICE_CONNECTION)
            pair = getattr(connection, n.ICE_NOMINATED).get(1)
        except AttributeError:
            return None
        if pair is None:
            return None
        return IcePair(local=_endpoint(pair.local_candidate), remote=_endpoint(pair.remote_candidate))
    return None


def parsed_description(pc: RTCPeerConnection, side: str) -> SessionDescription | None:
    """The ``local`` or ``remote`` description as aiortc parsed it when it was set (so reading
    its m-lines costs no second parse), or None when there is none. Parses the SDP itself if
    aiortc's private attributes moved."""
    names = n.PC_LOCAL_DESCRIPTIONS if side == "local" else n.PC_REMOTE_DESCRIPTIONS
    if all(hasattr(pc, name) for name in names):
        for name in names:
            description = getattr(pc, name)
            if isinstance(description, SessionDescription):
                return description
        return None
    wrapped = pc.localDescription if side == "local" else pc.remoteDescription
    return None if wrapped is None else SessionDescription.parse(wrapped.sdp)


def parse_candidate(text: str) -> RTCIceCandidate | None:
    """An ``a=candidate:...`` line (or a bare one) as aiortc's candidate, or None if malformed."""
    text = text.strip().removeprefix("a=").removeprefix("candidate:")
    try:
        return candidate_from_sdp(text)
    except (AssertionError, ValueError, IndexError):
        return None
