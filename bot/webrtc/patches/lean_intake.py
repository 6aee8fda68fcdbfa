"""Patch ``lean_intake``: RTP whose frames nobody needs is counted where it arrives, not
reassembled. Mirrors aioice 0.13 ``Connection.data_received`` (which must hand over bytes, never
None: ``compat`` refuses an aioice before 0.13) and aiortc 1.16 ``RTCRtpReceiver`` statistics.

A received packet normally climbs aiortc's whole receive path: aioice queues each datagram for
the DTLS transport's task, which unprotects it, parses every header extension, routes it to
its receiver, which feeds a bitrate estimator (REMB), a NACK generator and a jitter buffer that
reassembles frames. That is needed only where someone uses the frames: the room server when it
forwards a kind to subscribers, a bot whose sink records or decodes. A load test's publishers
mostly have no subscriber, and its viewers discard what they receive; there that path is most
of the receiving side's CPU (BENCHMARKS.md).

:class:`RtpIntake` sits in front of the queue, on the ICE connection of one leg
(``Connection.data_received``, replaced on that instance only), and in front of aioice on that
connection's sockets (each ``StunProtocol.datagram_received``, on the instance: aioice parses
every datagram as STUN before it hands it on, an exception per RTP packet). An SRTP packet whose SSRC
(clear text in the SRTP header) belongs to a :class:`Route` that does not want the full path
is unprotected, its fixed header read, and counted right there: packets, payload bytes,
complete frames (video: a run of consecutive sequence numbers ending with the marker bit, a
keyframe when its first packet starts a VP8 keyframe; audio: every packet), an ``on_rtp``
meter, and aiortc's own per-SSRC statistics, so its RTCP receiver reports (loss, jitter,
highest sequence) and ``getStats`` go on unchanged. Everything else (DTLS, STUN, RTCP, RTX,
unknown SSRCs, a route that wants the full path) goes to aiortc as before.

What the lean path does not do: NACKs (there is no frame to repair), PLIs of its own, and REMB
feedback. When a route starts wanting the full path (the server's first subscriber of a kind),
it goes back to aiortc's with a fresh NACK generator (and ``restart``: a fresh jitter buffer).

SSRCs are learned from aiortc's path (the first packets of each kind take it), so routing stays
aiortc's. The private attributes touched are checked by :func:`leanable` before anything is
replaced (:func:`probe`); an aiortc without them simply keeps its own path. Used by the room
server's publish legs and by the SDK's subscribe legs with a discarding sink.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import pylibsrtp
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import is_rtcp

from .. import _internals as n
from . import fast_srtp

_NTP_OFFSET_S = 2_208_988_800
"""Seconds from 1900 to 1970: arrival times in aiortc's clock (``clock.current_ms``, ms since
the NTP epoch), so a meter fed by both paths sees one time line."""

_NACK = n.RECEIVER_NACK_GENERATOR
_JITTER = n.RECEIVER_JITTER_BUFFER
_STREAMS = n.RECEIVER_REMOTE_STREAMS
_RTX_SSRC = n.RECEIVER_RTX_SSRC
_CODECS = n.RECEIVER_CODECS


def _ice_connection(receiver: Any) -> Any:
    return getattr(getattr(getattr(receiver, "transport", None), "transport", None), n.ICE_CONNECTION, None)


def codec_of(receiver: RTCRtpReceiver, payload_type: int) -> str:
    """The negotiated codec of a payload type on this receiver (``video/vp8``), or ''."""
    codec = getattr(receiver, _CODECS, {}).get(payload_type)
    return "" if codec is None else str(codec.mimeType).lower()


def probe(receiver: Any) -> bool:
    """Whether this aiortc has what :class:`RtpIntake` reads and replaces."""
    connection = _ice_connection(receiver)
    nack = getattr(receiver, _NACK, None)
    return (
        callable(getattr(connection, "data_received", None))
        and hasattr(receiver.transport, n.DTLS_RX_SRTP)
        and isinstance(getattr(receiver, _STREAMS, None), dict)
        and isinstance(getattr(receiver, _RTX_SSRC, None), dict)
        and isinstance(getattr(receiver, _CODECS, None), dict)
        and (nack is None or (hasattr(nack, "max_seq") and isinstance(getattr(nack, "missing", None), set)))
        and hasattr(getattr(receiver, _JITTER, None), "add")
    )


leanable = probe
"""The old name of :func:`probe`."""


def _aioice_hands_bytes() -> bool:
    """aioice before 0.13 could call ``data_received`` with None; the lean path reads bytes."""
    try:
        major, minor = (int(x) for x in version("aioice").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (0, 13)


_HANDS_BYTES = _aioice_hands_bytes()


def hands_bytes() -> bool:
    """Whether this aioice is one the lean path may be installed on (0.13 or later)."""
    return _HANDS_BYTES


def _never() -> bool:
    return False


def vp8_descriptor_size(packet: bytes, offset: int) -> int | None:
    """Bytes of the VP8 payload descriptor (RFC 7741 section 4.2) at ``offset``; None when
    truncated. What is after it is the VP8 bitstream a decoder takes."""
    try:
        first = packet[offset]
        pos = offset + 1
        if first & 0x80:
            extension = packet[pos]
            pos += 1
            if extension & 0x80:
                pos += 2 if packet[pos] & 0x80 else 1
            if extension & 0x40:
                pos += 1
            if extension & 0x30:
                pos += 1
        return pos - offset if pos < len(packet) else None
    except IndexError:
        return None


def vp8_starts_keyframe(packet: bytes, offset: int) -> bool:
    """Whether the RTP payload at ``offset`` begins a VP8 keyframe: the payload descriptor
    (RFC 7741 section 4.2) marks the start of partition 0 and the VP8 payload header's P bit
    (RFC 6386 section 9.1) is clear. Anything else, or a truncated packet: False."""
    try:
        first = packet[offset]
        if not first & 0x10 or first & 0x0F:
            return False
        pos = offset + 1
        if first & 0x80:
            extension = packet[pos]
            pos += 1
            if extension & 0x80:  # PictureID, 7 or 15 bits
                pos += 2 if packet[pos] & 0x80 else 1
            if extension & 0x40:  # TL0PICIDX
                pos += 1
            if extension & 0x30:  # TID/KEYIDX
                pos += 1
        return not packet[pos] & 0x01
    except IndexError:
        return False


class _Position:
    """What aiortc's ``StreamStatistics.add`` reads of a packet."""

    __slots__ = ("sequence_number", "timestamp")

    def __init__(self) -> None:
        self.sequence_number = 0
        self.timestamp = 0


class Route:
    """One received kind of one leg: where its counts go, and whether it wants the full path.

    ``counters`` has ``packets``, ``bytes`` and ``frames`` (``bytes`` None: not counted);
    ``on_rtp(ssrc, seq, timestamp, arrival_ms, size)`` meters every packet; ``wants_full()``
    says, per packet, that the kind must go through aiortc's path now; ``on_frame(keyframe)``
    hears every complete frame; ``restart`` runs when the kind goes back to aiortc's path.
    With ``on_sample(keyframe, data)``, a frame that ``wants_sample()`` says is wanted when it
    starts (video: only a keyframe) is reassembled (VP8: descriptors stripped) and handed over
    whole: a sink can decode a sample now and then without the full path for every frame.
    """

    def __init__(
        self,
        kind: str,
        receiver: RTCRtpReceiver,
        counters: Any,
        *,
        on_rtp: Callable[[int, int, int, float, int], None] | None = None,
        wants_full: Callable[[], bool] | None = None,
        restart: Callable[[], None] | None = None,
        on_frame: Callable[[bool, int], None] | None = None,
        wants_sample: Callable[[], bool] | None = None,
        on_sample: Callable[[bool, bytes], None] | None = None,
    ) -> None:
        self.kind = kind
        self.receiver = receiver
        self.counters = counters
        self.on_rtp = on_rtp
        self.wants_full = wants_full or _never
        self._restart = restart
        self._on_frame = on_frame
        self._video = kind == "video"
        self._next_seq: int | None = None
        self._frame_whole = False
        self._at_start = False
        self._frame_key = False
        self._frame_bytes = 0
        self._wants_sample = wants_sample if on_sample is not None else None
        self._on_sample = on_sample
        self._parts: list[bytes] | None = None
        self._position = _Position()
        self._stats: dict[int, Any] = getattr(receiver, _STREAMS)
        self.lean = False
        """Whether the last packet took the lean path (for the switch back to aiortc's)."""

    def take(self, ssrc: int, plain: bytes, arrival_ms: int) -> None:
        """Count one unprotected RTP packet (a lean one)."""
        first = plain[0]
        header = 12 + 4 * (first & 0x0F)
        if first & 0x10:
            if len(plain) < header + 4:
                return
            header += 4 + 4 * int.from_bytes(plain[header + 2 : header + 4])
        size = len(plain) - header - (plain[-1] if first & 0x20 else 0)
        if size < 0:
            return
        seq = int.from_bytes(plain[2:4])
        timestamp = int.from_bytes(plain[4:8])
        counters = self.counters
        counters.packets += 1
        if counters.bytes is not None:
            counters.bytes += size
        if self._video:
            if seq != self._next_seq:  # a gap: this frame is broken, wait for its end
                self._frame_whole = self._at_start = False
                self._parts = None
            if self._at_start:  # the first packet of a frame following a complete one
                self._frame_key = vp8_starts_keyframe(plain, header)
                self._frame_bytes = 0
                self._at_start = False
                wants = self._wants_sample
                self._parts = [] if wants is not None and self._frame_key and wants() else None
            self._frame_bytes += size
            if self._parts is not None:
                skip = vp8_descriptor_size(plain, header)
                if skip is None or skip > size:
                    self._parts = None
                else:
                    self._parts.append(plain[header + skip : header + size])
            if plain[1] & 0x80:  # the marker: the last packet of a frame
                if self._frame_whole:
                    counters.frames += 1
                    if self._on_frame is not None:
                        self._on_frame(self._frame_key, self._frame_bytes)
                    if self._parts is not None and self._on_sample is not None:
                        self._on_sample(True, b"".join(self._parts))
                self._parts = None
                self._frame_whole = self._at_start = True
            self._next_seq = (seq + 1) & 0xFFFF
        else:
            counters.frames += 1
            if self._on_frame is not None:
                self._on_frame(True, size)
            if self._wants_sample is not None and self._on_sample is not None and self._wants_sample():
                self._on_sample(True, plain[header : header + size])
        if self.on_rtp is not None:
            self.on_rtp(ssrc, seq, timestamp, arrival_ms, size)
        stats = self._stats.get(ssrc)
        if stats is not None:
            position = self._position
            position.sequence_number = seq
            position.timestamp = timestamp
            stats.add(position)

    def resume(self) -> None:
        """Back to aiortc's path: forget the sequence state it kept from before the lean run,
        so the gap is neither NACKed nor held in the jitter buffer."""
        self.lean = False
        self._next_seq = None
        self._frame_whole = self._at_start = False
        self._parts = None
        nack = getattr(self.receiver, _NACK)
        if nack is not None:  # video only
            nack.max_seq = None
            nack.missing.clear()
        if self._restart is not None:
            self._restart()


class RtpIntake:
    """The lean path of one leg's ICE connection (see the module docstring)."""

    def __init__(self) -> None:
        self.routes: dict[int, Route] = {}
        self.lean_packets = 0
        """Packets counted on the lean path (the server's room view shows it per stream)."""
        self._installed: list[tuple[Any, Callable[[bytes, int], None]]] = []
        self._fronted: list[Any] = []
        self._session: Any = None
        self._unprotect: Callable[[bytes], bytes] | None = None

    @property
    def installed(self) -> bool:
        return bool(self._installed)

    def learn(self, ssrc: int, route: Route) -> None:
        """A primary (not RTX) SSRC seen on aiortc's path, and the kind it carries."""
        if ssrc not in self.routes and ssrc not in getattr(route.receiver, _RTX_SSRC):
            self.routes[ssrc] = route

    def install(self, receiver: RTCRtpReceiver) -> bool:
        """Start taking packets from the ICE connection under ``receiver`` (once per leg); the
        intake is its own handle (:meth:`uninstall`)."""
        if self._installed or not _HANDS_BYTES or not probe(receiver):
            return False
        dtls = receiver.transport
        connection = _ice_connection(receiver)
        inner = connection.data_received
        take = self._take

        def data_received(data: bytes, component: int) -> None:
            if not take(dtls, data):
                inner(data, component)

        connection.data_received = data_received
        self._installed.append((connection, inner))
        # And in front of aioice itself on each socket: it tries every datagram as STUN first
        # (a parse and an exception per RTP packet) before handing it to the connection.
        protocols = getattr(connection, n.ICE_PROTOCOLS, None)
        for protocol in protocols if isinstance(protocols, list) else ():
            received = getattr(protocol, "datagram_received", None)
            if callable(received) and "datagram_received" not in vars(protocol):
                protocol.datagram_received = _front(take, dtls, received)
                self._fronted.append(protocol)
        return True

    def _take(self, dtls: Any, data: bytes) -> bool:
        if len(data) < 12 or not 127 < data[0] < 192 or is_rtcp(data):
            return False
        ssrc = int.from_bytes(data[8:12])
        route = self.routes.get(ssrc)
        srtp = dtls._rx_srtp
        if route is None or srtp is None:
            return False
        if route.wants_full():
            if route.lean:
                route.resume()
            return False
        route.lean = True
        unprotect = self._unprotect
        if srtp is not self._session or unprotect is None:
            self._session, unprotect = srtp, fast_srtp.unprotector(srtp)
            self._unprotect = unprotect
        try:
            plain = unprotect(data)
        except pylibsrtp.Error:
            return True  # what aiortc does too: dropped (replayed or forged)
        self.lean_packets += 1
        route.take(ssrc, plain, int((time.time() + _NTP_OFFSET_S) * 1000))
        return True

    def uninstall(self) -> None:
        for connection, inner in self._installed:
            connection.data_received = inner
        self._installed.clear()
        for protocol in self._fronted:
            vars(protocol).pop("datagram_received", None)  # aioice's own method shows again
        self._fronted.clear()


def _front(
    take: Callable[[Any, bytes], bool], dtls: Any, received: Callable[[bytes, Any], None]
) -> Callable[[bytes, Any], None]:
    """A socket's ``datagram_received`` that takes lean RTP (first byte 128-191, RFC 7983)
    before aioice sees it; everything else goes on to aioice."""

    def datagram_received(data: bytes, addr: Any) -> None:
        if data and 127 < data[0] < 192 and take(dtls, data):
            return
        received(data, addr)

    return datagram_received
