"""Patch ``keyframes``: a sender's PLI/FIR reaches whoever can make a keyframe.

Mirrors aiortc 1.16 ``RTCRtpSender._handle_rtcp_packet``, which answers PLI/FIR by calling
``self._send_keyframe()``; that only flags aiortc's own encoder, so on the packet path (a
pre-encoded source, the server's forwarders) nobody hears it. :func:`install` wraps or replaces
it on one sender instance. Also the receive side's PLI (``RTCRtpReceiver._send_rtcp_pli``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, cast

from .. import _internals as n


def probe(sender: Any) -> bool:
    """Whether aiortc calls a ``_send_keyframe`` of this sender on PLI/FIR."""
    return callable(getattr(sender, n.SEND_KEYFRAME, None))


class Handle:
    """Puts the sender's own ``_send_keyframe`` back."""

    def __init__(self, sender: Any) -> None:
        self._sender = sender

    def uninstall(self) -> None:
        vars(self._sender).pop(n.SEND_KEYFRAME, None)


def install(sender: Any, on_keyframe: Callable[[], None], *, keep_own: bool = True) -> Handle | None:
    """Call ``on_keyframe`` on every PLI/FIR this sender gets (after aiortc's own handling
    with ``keep_own``, instead of it without); None if :func:`probe` fails."""
    original = getattr(sender, n.SEND_KEYFRAME, None)
    if not callable(original):
        return None
    if keep_own:

        def send_keyframe() -> None:
            original()
            on_keyframe()

        setattr(sender, n.SEND_KEYFRAME, send_keyframe)
    else:
        setattr(sender, n.SEND_KEYFRAME, on_keyframe)
    return Handle(sender)


PliSender = Callable[[int], Coroutine[Any, Any, None]]


def pli_sender(receiver: Any) -> PliSender | None:
    """The receiver's ``_send_rtcp_pli(ssrc)``, or None if this aiortc has none."""
    send = getattr(receiver, n.SEND_RTCP_PLI, None)
    return cast("PliSender", send) if callable(send) else None
