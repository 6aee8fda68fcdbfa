"""The base of every peer leg, the SDK's and the server's: one RTCPeerConnection, its state
changes, trickled candidates, the selected ICE pair, and a close that always finishes.

The two sides differ in who offers (the client) and what a bad candidate means (the client
logs the media server's, the server refuses the client's with 1155); what they share lives
here once, so a fix to closing or to candidates lands on both.
"""

from __future__ import annotations

import asyncio

from aiortc import RTCConfiguration, RTCPeerConnection

from . import reclaim
from .patches import setup_once
from .peer import IcePair, parse_candidate, selected_pair


class PeerLeg:
    """One peer connection. Subclasses react to :meth:`on_connection_state`."""

    role = "leg"

    def __init__(self, configuration: RTCConfiguration) -> None:
        setup_once.install()  # one certificate and one interface scan per process, not per leg
        self.pc = RTCPeerConnection(configuration)
        self.closing = False
        """Set by :meth:`close_pc`: a ``closed`` state after it is ours, not the peer's."""
        self.pc.on("connectionstatechange", self._state_changed)

    @property
    def connection_state(self) -> str:
        return str(self.pc.connectionState)

    def _state_changed(self) -> None:
        self.on_connection_state(self.connection_state)

    def on_connection_state(self, state: str) -> None:
        """Hook: aiortc's ``connectionState`` changed to ``state``."""

    async def add_ice_candidate(self, line: str, sdp_mid: str | None, sdp_mline_index: int | None) -> bool:
        """A trickled candidate (``candidate:...``, with or without ``a=``); False when it does
        not parse (the caller decides whether that is an error). aioice's own refusals raise."""
        ice = parse_candidate(line)
        if ice is None:
            return False
        ice.sdpMid = sdp_mid
        ice.sdpMLineIndex = sdp_mline_index
        await self.pc.addIceCandidate(ice)
        return True

    async def end_of_candidates(self) -> None:
        await self.pc.addIceCandidate(None)

    def selected_pair(self) -> IcePair | None:
        """The nominated pair of the leg's one ICE transport (BUNDLE), or None before ICE
        completes (or if aioice's internals moved)."""
        return selected_pair(self.pc)

    async def close_pc(self) -> None:
        """Close the peer connection. Shielded: a cancelled caller must not leave the ICE and
        DTLS transports running (their sockets and tasks outlive the leg otherwise)."""
        self.closing = True
        try:
            await asyncio.shield(self.pc.close())
        finally:
            reclaim.closed(self.pc)  # its cycles are freed by a full collection only
