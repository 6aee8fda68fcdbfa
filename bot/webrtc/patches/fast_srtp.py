"""Patch ``fast_srtp``: SRTP protect/unprotect and the UDP write with less Python per packet.

Mirrors pylibsrtp 0.12 ``Session.__process`` (one 1500-byte buffer per session, ``_cdata``
and ``_buffer``, the session in ``_srtp[0]``) and CPython's selector datagram transport
(``_sock``). Every RTP packet of a swarm goes through protect and ``sendto`` (the bots) or
unprotect (the room server): pylibsrtp allocates a length cell per call and checks its
arguments again, asyncio's ``sendto`` checks its state and buffers; together about 3 us of a
packet's ~15 on the bots' side (``bench`` figures in BENCHMARKS.md, "Half the join cost").

:func:`protector` and :func:`unprotector` return the session's own bound method when the
session does not look like pylibsrtp 0.12's; :func:`raw_sendto` returns None unless the
transport is asyncio's own unconnected UDP transport with nothing queued, so a TURN relay or
another loop keeps its own path. A raw write that the kernel refuses (a full buffer) raises
``OSError``; the caller drops that packet, as the network would have.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pylibsrtp
from pylibsrtp import _binding

_FFI = _binding.ffi
_LIB = _binding.lib
_OK = _LIB.srtp_err_status_ok
_PROTECT_TRAILER = pylibsrtp.SRTP_MAX_TRAILER_LEN


def probe(session: Any) -> bool:
    """Whether ``session`` is a pylibsrtp session with the buffer this reads and writes."""
    cdata = getattr(session, "_cdata", None)
    srtp = getattr(session, "_srtp", None)
    return (
        isinstance(session, pylibsrtp.Session)
        and cdata is not None
        and isinstance(getattr(session, "_buffer", None), _FFI.buffer)
        and srtp is not None
        and len(session._buffer) == len(cdata)
        and hasattr(_LIB, "srtp_protect")
        and hasattr(_LIB, "srtp_unprotect")
    )


def probe_library() -> bool:
    """The probe on a throw-away session (for ``bot.webrtc.fast_paths``)."""
    try:
        policy = pylibsrtp.Policy(key=bytes(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        return probe(pylibsrtp.Session(policy=policy))
    except Exception:
        return False


def _process(session: Any, func: Any, trailer: int) -> Callable[[bytes], bytes]:
    cdata, buffer, srtp = session._cdata, session._buffer, session._srtp[0]
    length = _FFI.new("int *")
    limit = len(buffer) - trailer
    errors = pylibsrtp.ERRORS

    def process(data: bytes) -> bytes:
        size = len(data)
        if size > limit:
            raise ValueError("packet is too long")
        length[0] = size
        buffer[0:size] = data
        rc = func(srtp, cdata, length)
        if rc != _OK:
            raise pylibsrtp.Error(errors[rc])
        return buffer[0 : length[0]]  # type: ignore[no-any-return]

    process.keep = session  # type: ignore[attr-defined]  # the buffers live as long as this
    return process


def protector(session: Any) -> Callable[[bytes], bytes]:
    """``session.protect``, or the same with less Python per call (see the module docstring)."""
    if not probe(session):
        return session.protect  # type: ignore[no-any-return]
    return _process(session, _LIB.srtp_protect, _PROTECT_TRAILER)


def unprotector(session: Any) -> Callable[[bytes], bytes]:
    """``session.unprotect``, or the same with less Python per call."""
    if not probe(session):
        return session.unprotect  # type: ignore[no-any-return]
    return _process(session, _LIB.srtp_unprotect, 0)


def raw_sendto(transport: Any) -> Callable[[bytes, Any], Any] | None:
    """The socket's own ``sendto`` under asyncio's UDP transport, or None (see above)."""
    sock = getattr(transport, "_sock", None)
    if (
        not isinstance(transport, asyncio.BaseTransport)  # asyncio's UDP transport is not a
        or not callable(getattr(transport, "sendto", None))  # DatagramTransport subclass
        or not isinstance(sock, socket.socket)
        or sock.type != socket.SOCK_DGRAM
        or getattr(transport, "_address", None) is not None  # connected: sendto would refuse
        or getattr(transport, "get_write_buffer_size", lambda: 1)()
        or transport.is_closing()
    ):
        return None
    return sock.sendto
