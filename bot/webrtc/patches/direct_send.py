"""Patch ``direct_send``: shared packets straight onto the wire, for a publish leg whose media
is shared. Mirrors aiortc 1.16 ``RTCRtpSender._run_rtp`` / ``_retransmit`` (and aioice 0.13's
nominated pair, ``Connection._nominated``).

With shared media a bot does not encode; aiortc's ``RTCRtpSender`` still runs one task per
sender that wakes for every packet, reads it from a queue, packetizes it (a VP8 payload
descriptor per bot), builds an ``RtpPacket`` object, serializes its header extensions, stamps
the NTP clock twice, and awaits four coroutine layers down to ``sendto``. For a swarm that is
most of what a bot costs.

:class:`DirectSender` is a :class:`bot.media.PacketSink`: the shared stream hands it every
packet in the producing task, and it writes the RTP at once: the payloads come from one
packetization per packet for all bots (:class:`_Packed`), the header from ``struct`` with the
extension bytes laid out once per sender by aiortc's own ``HeaderExtensionsMap`` (only the
three abs-send-time bytes change), then the sender's SRTP session and the selected ICE pair's
datagram transport (a UDP socket, or aioice's TURN transport for a relayed pair, which wraps
each datagram for the relay as it does for aiortc). It keeps what the rest of aiortc reads
from the sender up to date: packet and octet counts (``getStats``: ``outbound-rtp``, and the
RTCP sender reports aiortc still sends from its own task), the last RTP/NTP timestamps (sender
reports), and a history of the last ``RTP_HISTORY_SIZE`` packets (aiortc's own constant) for
retransmissions on NACK (``_retransmit`` is replaced on the instance). What ``getStats`` reads
of the DTLS transport (``transport`` stats: its own byte/packet counters) is not advanced: the
packets bypass ``RTCDtlsTransport._send_rtp``.

:func:`probe` says whether a sender has what this reads and writes; :func:`install` replaces
``_run_rtp`` on one sender instance only (its :class:`Handle` puts aiortc's back) (the embedded server and
other bots in the process keep aiortc's path). When the selected pair is not aioice's (an
aiortc or aioice whose internals differ), it runs aiortc's own ``_run_rtp``. Muting and the
audio-only fallback go through the leg's gate (``admit``); a video sender starts at a keyframe.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import weakref
from collections.abc import Callable
from typing import Any

import pylibsrtp
from aioice.ice import StunProtocol
from aiortc import RTCRtpSender
from aiortc.clock import current_ntp_time
from aiortc.codecs import get_encoder
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpsender import random_sequence_number
from aiortc.rtp import RTP_HISTORY_SIZE, HeaderExtensions, RtpPacket, wrap_rtx
from aiortc.utils import random32

from bot.media import Packet, PacketStream

from .. import _internals as n
from . import fast_srtp

_HEADER = struct.Struct("!BBHII")
_DTLS_CONNECTED = DtlsState.CONNECTED
_HISTORY = RTP_HISTORY_SIZE
_SENTINEL = b"\xab\xcd\xef"  # where the abs-send-time bytes go in the extension template
_NTP, _RTP_TS = n.SENDER_NTP_TIMESTAMP, n.SENDER_RTP_TIMESTAMP
_OCTETS, _PACKETS = n.SENDER_OCTET_COUNT, n.SENDER_PACKET_COUNT
_SENDER_ATTRS = (
    n.SENDER_RTP_STARTED,
    n.SENDER_RTP_EXITED,
    n.SENDER_MID,
    n.SENDER_EXTENSIONS_MAP,
    n.SENDER_RTX_PAYLOAD_TYPE,
    n.SENDER_RTX_SEQUENCE_NUMBER,
    n.SENDER_TRACK,
    _NTP,
    _RTP_TS,
    _OCTETS,
    _PACKETS,
)


def _ice_connection(sender: RTCRtpSender) -> Any:
    return getattr(getattr(sender.transport, "transport", None), n.ICE_CONNECTION, None)


def probe(sender: Any) -> bool:
    """Whether this aiortc's sender has everything :class:`DirectSender` reads and writes."""
    try:
        state = vars(sender)
    except TypeError:
        return False
    return (
        all(name in state for name in _SENDER_ATTRS)
        and isinstance(state[n.SENDER_RTP_STARTED], asyncio.Event)
        and isinstance(state[n.SENDER_RTP_EXITED], asyncio.Event)
        and callable(getattr(state[n.SENDER_EXTENSIONS_MAP], "set", None))
        and callable(getattr(sender, n.RETRANSMIT, None))
        and callable(getattr(sender, n.RUN_RTP, None))
        and hasattr(sender, n.ENABLED)
        and hasattr(getattr(sender, "transport", None), n.DTLS_TX_SRTP)
        and callable(getattr(sender.transport, n.DTLS_SEND_RTP, None))
        and isinstance(getattr(sender.transport, n.DTLS_STATE, None), DtlsState)
        and isinstance(getattr(_ice_connection(sender), n.ICE_NOMINATED, None), dict)
    )


eligible = probe
"""The old name of :func:`probe`."""


def _udp_link(
    sender: RTCRtpSender,
) -> tuple[Callable[[bytes], bytes], Callable[[bytes, Any], Any], Any] | None:
    """(protect, sendto, address) of the selected pair: the sender's SRTP session and the
    transport under aioice's ``StunProtocol`` (a UDP socket, or a TURN relay's transport),
    both through :mod:`.fast_srtp` where it applies."""
    dtls = sender.transport
    srtp = getattr(dtls, n.DTLS_TX_SRTP, None)
    pair = getattr(_ice_connection(sender), n.ICE_NOMINATED).get(1)
    if srtp is None or pair is None or type(pair.protocol) is not StunProtocol:
        return None
    udp = getattr(pair.protocol, "transport", None)
    sendto = fast_srtp.raw_sendto(udp) or getattr(udp, "sendto", None)
    if not callable(sendto):
        return None
    return fast_srtp.protector(srtp), sendto, pair.remote_addr


class _Packed:
    """One stream's packets, packetized once for every sender of one codec."""

    __slots__ = ("_encoder", "abs_send_time", "ntp", "packet", "payloads", "timestamp")

    def __init__(self, codec: RTCRtpCodecParameters) -> None:
        self._encoder = get_encoder(codec)
        self.packet: Packet | None = None
        self.payloads: list[bytes] = []
        self.timestamp = 0
        self.ntp = 0
        self.abs_send_time = b"\x00\x00\x00"

    def pack(self, packet: Packet) -> _Packed:
        if packet is not self.packet:
            self.payloads, self.timestamp = self._encoder.pack(packet)
            self.ntp = current_ntp_time()
            self.abs_send_time = ((self.ntp >> 14) & 0xFFFFFF).to_bytes(3, "big")
            self.packet = packet
        return self


_packers: weakref.WeakKeyDictionary[PacketStream, dict[str, _Packed]] = weakref.WeakKeyDictionary()


def _packed(stream: PacketStream, codec: RTCRtpCodecParameters) -> _Packed:
    by_codec = _packers.setdefault(stream, {})
    key = codec.mimeType.lower()
    if key not in by_codec:
        by_codec[key] = _Packed(codec)
    return by_codec[key]


class DirectSender:
    """Writes one sender's RTP for each packet of its shared stream (see the module docstring)."""

    def __init__(
        self,
        sender: RTCRtpSender,
        stream: PacketStream,
        codec: RTCRtpCodecParameters,
        link: tuple[Callable[[bytes], bytes], Callable[[bytes, Any], Any], Any],
        admit: Callable[[bool], bool],
    ) -> None:
        self.kind = stream.kind
        self._sender = sender
        self._state = vars(sender)
        self._dtls = sender.transport
        self._protect, self._sendto, self._addr = link
        self._admit = admit
        self.stream = stream
        self._codec = codec
        self._packed = _packed(stream, codec)
        self._rebase: int | None = None
        """After :meth:`switch`: the RTP timestamp the next frame gets (then None)."""
        self._last_ts = 0
        self._pt: int = codec.payloadType or 0
        self._ssrc: int = getattr(sender, n.SSRC)
        self._seq = random_sequence_number()
        self._origin = random32()
        self._mid: str | None = self._state[n.SENDER_MID]
        self._map = self._state[n.SENDER_EXTENSIONS_MAP]
        template = HeaderExtensions()
        template.mid = self._mid
        template.abs_send_time = int.from_bytes(_SENTINEL, "big")
        profile, value = self._map.set(template)
        self._first = 0x90 if value else 0x80  # version 2, extension bit
        head = struct.pack("!HH", profile, len(value) >> 2) if value else b""
        at = value.find(_SENTINEL)
        self._abs = at >= 0
        self._ext_head = head + (value[:at] if self._abs else value)
        self._ext_tail = value[at + 3 :] if self._abs else b""
        self._history: list[tuple[int, int, int, bytes] | None] = [None] * _HISTORY
        self._awaiting_keyframe = self.kind == "video"
        self.packets_sent = 0
        self.frames_sent = 0
        self.retransmitted = 0
        """Packets sent again on the receiver's NACK."""
        self.send_errors = 0
        """Frames cut short because the socket refused a packet (a full send buffer)."""
        self.error: BaseException | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def deliver(self, packet: Packet, keyframe: bool) -> None:
        if self.done.done() or not self._admit(keyframe) or not self._sender._enabled:
            return
        if self._awaiting_keyframe:
            if not keyframe:
                return
            self._awaiting_keyframe = False
        if self._dtls._state is not _DTLS_CONNECTED:  # per frame: not the ``state`` string
            self._finish()
            return
        packed = self._packed.pack(packet)
        if self._rebase is not None:  # a new stream's clock: go on from where the last one was
            self._origin = (self._rebase - packed.timestamp) & 0xFFFFFFFF
            self._rebase = None
        timestamp = (self._origin + packed.timestamp) & 0xFFFFFFFF
        ext = self._ext_head + packed.abs_send_time + self._ext_tail if self._abs else self._ext_head
        payloads = packed.payloads
        last = len(payloads) - 1
        seq, octets = self._seq, 0
        header, first, pt, ssrc = _HEADER.pack, self._first, self._pt, self._ssrc
        protect, sendto, addr, history = self._protect, self._sendto, self._addr, self._history
        try:
            for i, payload in enumerate(payloads):
                marker = 0x80 if i == last else 0
                sendto(protect(header(first, marker | pt, seq, timestamp, ssrc) + ext + payload), addr)
                history[seq % _HISTORY] = (seq, timestamp, marker, payload)
                seq = (seq + 1) & 0xFFFF
                octets += len(payload)
        except pylibsrtp.Error as exc:
            self._finish(exc)
            return
        except OSError:  # the kernel's buffer is full (a raw socket write): the rest is lost
            self.send_errors += 1
        finally:
            sent = (seq - self._seq) & 0xFFFF
            self._seq = seq
            state = self._state
            state[_NTP] = packed.ntp
            state[_RTP_TS] = self._last_ts = timestamp
            state[_OCTETS] += octets
            state[_PACKETS] += sent
            self.packets_sent += sent
            self.frames_sent += 1

    def switch(self, stream: PacketStream) -> None:
        """Send ``stream``'s packets from now on (another file, same codec): the sequence
        numbers and the RTP clock go on where they were (one frame later), so a receiver sees
        one stream whose content changed; video waits for the new stream's keyframe."""
        if stream is self.stream:
            return
        self.stream.detach(self)
        self.stream = stream
        self._packed = _packed(stream, self._codec)
        step = (self._codec.clockRate or 90000) // (50 if self.kind == "audio" else 30)
        self._rebase = (self._last_ts + step) & 0xFFFFFFFF
        self._awaiting_keyframe = self.kind == "video"
        stream.attach(self)
        if self.kind == "video":
            stream.request_keyframe()

    async def retransmit(self, sequence_number: int) -> None:
        """aiortc's ``_retransmit`` for this sender: one packet from the history, as RTX when
        negotiated."""
        entry = self._history[sequence_number % _HISTORY]
        if entry is None or entry[0] != sequence_number:
            return
        _, timestamp, marker, payload = entry
        packet = RtpPacket(payload_type=self._pt, sequence_number=sequence_number, timestamp=timestamp)
        packet.ssrc = self._ssrc
        packet.marker = 1 if marker else 0
        packet.payload = payload
        packet.extensions.mid = self._mid
        rtx_pt = self._state[n.SENDER_RTX_PAYLOAD_TYPE]
        if rtx_pt is not None:
            rtx_seq = self._state[n.SENDER_RTX_SEQUENCE_NUMBER]
            rtx_ssrc = getattr(self._sender, n.RTX_SSRC_OF_SENDER)
            packet = wrap_rtx(packet, payload_type=rtx_pt, sequence_number=rtx_seq, ssrc=rtx_ssrc)
            self._state[n.SENDER_RTX_SEQUENCE_NUMBER] = (rtx_seq + 1) & 0xFFFF
        with contextlib.suppress(ConnectionError):
            await getattr(self._dtls, n.DTLS_SEND_RTP)(packet.serialize(self._map))
            self.retransmitted += 1

    def failed(self, error: BaseException) -> None:
        """The stream detached us after ``deliver`` raised: end this sender's run (its leg's
        media stops; the leg's watchdog and the room see it)."""
        self._finish(error)

    def _finish(self, error: BaseException | None = None) -> None:
        self.error = error
        if not self.done.done():
            self.done.set_result(None)


class Handle:
    """One sender's direct path: :meth:`uninstall` puts aiortc's ``_run_rtp`` and
    ``_retransmit`` back on the instance (for a sender that has not started yet)."""

    def __init__(self, sender: RTCRtpSender, run_rtp: Any, retransmit: Any) -> None:
        self._sender = sender
        self._saved = {n.RUN_RTP: run_rtp, n.RETRANSMIT: retransmit}

    def uninstall(self) -> None:
        state = vars(self._sender)
        for name in self._saved:
            state.pop(name, None)  # the class's own method shows through again


def install(
    sender: RTCRtpSender,
    stream: PacketStream,
    admit: Callable[[bool], bool],
    on_direct: Callable[[DirectSender | None], None] | None = None,
) -> Handle | None:
    """Make this sender take the direct path when it starts (see the module docstring), or
    None when :func:`probe` says this aiortc differs. ``on_direct`` hears the
    :class:`DirectSender` (or None: aiortc's path was taken at start)."""
    if not probe(sender):
        return None
    aiortc_run_rtp = getattr(sender, n.RUN_RTP)
    handle = Handle(sender, aiortc_run_rtp, getattr(sender, n.RETRANSMIT))
    state = vars(sender)

    async def run_rtp(codec: RTCRtpCodecParameters) -> None:
        link = _udp_link(sender)
        if link is None:
            if on_direct is not None:
                on_direct(None)
            await aiortc_run_rtp(codec)
            return
        state[n.SENDER_RTP_STARTED].set()
        direct = DirectSender(sender, stream, codec, link, admit)
        setattr(sender, n.RETRANSMIT, direct.retransmit)
        if on_direct is not None:
            on_direct(direct)
        stream.attach(direct)
        try:
            await direct.done
        except asyncio.CancelledError:
            pass
        finally:
            direct.stream.detach(direct)  # the stream it sends now (see DirectSender.switch)
            track = state[n.SENDER_TRACK]
            if track is not None:
                track.stop()
                state[n.SENDER_TRACK] = None
            state[n.SENDER_RTP_EXITED].set()

    setattr(sender, n.RUN_RTP, run_rtp)
    return handle
