"""Patch ``rtcp_taps``: meters on one receiver's RTP and RTCP and one sender's RTCP.

Mirrors aiortc 1.16 ``RTCRtpReceiver._handle_rtp_packet(packet, arrival_time_ms)``,
``RTCRtpReceiver._handle_rtcp_packet(packet)`` and ``RTCRtpSender._handle_rtcp_packet(packet)``,
which the DTLS transport calls per packet through the instance (so a wrapper set on the
instance is what it calls). The wrappers are bound once, at install time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .. import _internals as n

RtpHandler = Callable[..., Awaitable[None]]
"""``(packet, arrival_time_ms)``; aiortc passes the time by keyword."""
RtcpHandler = Callable[[Any], Awaitable[None]]


def probe(receiver: Any) -> bool:
    """Whether the receiver's RTP and RTCP entry points can be wrapped."""
    return callable(getattr(receiver, n.HANDLE_RTP_PACKET, None)) and callable(
        getattr(receiver, n.HANDLE_RTCP_PACKET, None)
    )


def probe_sender(sender: Any) -> bool:
    """Whether the sender's RTCP entry point can be wrapped."""
    return callable(getattr(sender, n.HANDLE_RTCP_PACKET, None))


class Handle:
    """Puts the object's own handlers back."""

    def __init__(self, obj: Any, names: tuple[str, ...]) -> None:
        self._obj = obj
        self._names = names

    def uninstall(self) -> None:
        state = vars(self._obj)
        for name in self._names:
            state.pop(name, None)


def rtp_handler(receiver: Any) -> RtpHandler | None:
    """The receiver's current RTP entry point (to wrap), or None."""
    handler = getattr(receiver, n.HANDLE_RTP_PACKET, None)
    return handler if callable(handler) else None


def rtcp_handler(obj: Any) -> RtcpHandler | None:
    """The receiver's or sender's current RTCP entry point (to wrap), or None."""
    handler = getattr(obj, n.HANDLE_RTCP_PACKET, None)
    return handler if callable(handler) else None


def install(obj: Any, *, rtp: RtpHandler | None = None, rtcp: RtcpHandler | None = None) -> Handle:
    """Set the wrappers (built by the caller around :func:`rtp_handler`/:func:`rtcp_handler`)
    on this one receiver or sender."""
    names: list[str] = []
    if rtp is not None:
        setattr(obj, n.HANDLE_RTP_PACKET, rtp)
        names.append(n.HANDLE_RTP_PACKET)
    if rtcp is not None:
        setattr(obj, n.HANDLE_RTCP_PACKET, rtcp)
        names.append(n.HANDLE_RTCP_PACKET)
    return Handle(obj, tuple(names))


def ssrc_of(sender: Any) -> int | None:
    """The sender's media SSRC (what receiver reports about its stream name)."""
    ssrc = getattr(sender, n.SSRC, None)
    return ssrc if isinstance(ssrc, int) else None
