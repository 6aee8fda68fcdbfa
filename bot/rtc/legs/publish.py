"""The send-only publish leg (see :class:`PublishLeg`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from aiortc import (
    RTCRtpSender,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import SessionDescription

from bot.media import PacketStream
from bot.proto import IceServer, MediaKind
from bot.webrtc import (
    FLOOR_BITRATE_BPS,
    CappedVp8Encoder,
    DirectSender,
    direct_send,
    encoder_cap,
    keyframes,
    parsed_description,
)

from ..errors import MediaError
from ..stats import CLOCK_RATES, DEFAULT_WINDOW_S, RateWindow, SendSample
from .base import _answered_codec, _drop_receive_estimator, _Leg, _preferred, _stat, packet_mime_type

_log = structlog.get_logger("bot.rtc.legs")


class _Gate(MediaStreamTrack):
    """Passes the source's frames through while open; while closed it keeps reading and drops
    them, so the sender sends nothing, the source never backs up, and on reopening media
    resumes at the source's current timestamp (no burst, no renegotiation).

    For pre-encoded video (a packet source) reopening asks the source for a keyframe and drops
    packets until one comes: a delta frame whose reference was dropped would show receivers
    broken video until the next keyframe."""

    def __init__(self, source: MediaStreamTrack, is_open: bool) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        self._open = is_open
        self._packets = source.kind == "video" and packet_mime_type(source) is not None
        self._need_keyframe = False
        self.skipped = 0
        """Packets dropped after reopening while waiting for a keyframe."""

    @property
    def is_open(self) -> bool:
        return self._open

    @is_open.setter
    def is_open(self, value: bool) -> None:
        if value and not self._open and self._packets:
            self._need_keyframe = True
            self.source.request_keyframe()  # type: ignore[attr-defined]
        self._open = value

    def wait_for_keyframe(self) -> None:
        """Drop the source's packets until its next keyframe (asked for now)."""
        if self._packets:
            self._need_keyframe = True
            self.source.request_keyframe()  # type: ignore[attr-defined]

    def admit(self, keyframe: bool) -> bool:
        """Whether a frame (a packet: ``keyframe`` says if it is one) goes out now."""
        if not self._open:
            return False
        if self._need_keyframe:
            if not keyframe:
                self.skipped += 1
                return False
            self._need_keyframe = False
        return True

    async def recv(self) -> Any:
        while True:
            frame = await self.source.recv()
            if self.admit(getattr(frame, "is_keyframe", True)):
                return frame


class PublishLeg(_Leg):
    """A send-only RTCPeerConnection carrying our audio and/or video to the media server.

    A track that sends pre-encoded packets (``bot.media.PacketTrack``) gets its own codec
    first in the offer, the media server's keyframe requests (PLI/FIR) forwarded to its
    source, and a clean restart at a keyframe when its video is unmuted. Its bitrate is the
    source's: the room's video cap and REMB do not apply (:meth:`set_video_cap` says False).
    """

    role = "publish"

    def __init__(
        self,
        *,
        tracks: Mapping[MediaKind, MediaStreamTrack],
        ice_servers: Sequence[IceServer] = (),
        force_turn: bool = False,
        muted: Mapping[MediaKind, bool] | None = None,
        on_failed: Callable[[str], None] | None = None,
        rate_window_s: float = DEFAULT_WINDOW_S,
        log: Any = None,
    ) -> None:
        super().__init__(ice_servers=ice_servers, force_turn=force_turn, on_failed=on_failed, log=log)
        self._gates: dict[MediaKind, _Gate] = {
            kind: _Gate(track, not (muted or {}).get(kind, False)) for kind, track in tracks.items()
        }
        self._packet_mime: dict[MediaKind, str] = {}
        self._senders: dict[MediaKind, RTCRtpSender] = {}
        self.direct: dict[MediaKind, DirectSender | None] = {}
        """Per packet kind, once sending: its direct sender, or None on aiortc's path."""
        for kind, gate in self._gates.items():
            mime = packet_mime_type(gate.source)
            transceiver = self.pc.addTransceiver(gate, direction="sendonly")
            transceiver.setCodecPreferences(_preferred(kind, mime))
            _drop_receive_estimator(transceiver.receiver)
            self._senders[kind] = transceiver.sender
            if mime is not None:
                self._packet_mime[kind] = mime
                self._forward_keyframe_requests(transceiver.sender, gate)
                self._send_directly(kind, transceiver.sender, gate)
        self._encoder: CappedVp8Encoder | None = None
        self._cap_bps: int | None = None
        # liveness: per kind, when it last started sending and how many packets it had sent
        self._active_since: dict[str, float | None] = {}
        self._sent_seen: dict[str, int] = {}
        created = time.monotonic()
        self._samples: dict[MediaKind, RateWindow[SendSample]] = {
            kind: RateWindow(SendSample(at=created), rate_window_s) for kind in self._senders
        }

    @property
    def kinds(self) -> tuple[MediaKind, ...]:
        return tuple(self._senders)

    def _send_directly(self, kind: MediaKind, sender: RTCRtpSender, gate: _Gate) -> None:
        """Shared packets go from the stream to the wire without a task per bot
        (:mod:`bot.webrtc.patches.direct_send`); aiortc's own path where its internals are not
        the expected ones."""
        stream = getattr(gate.source, "stream", None)
        if not isinstance(stream, PacketStream):
            return

        def taken(direct: DirectSender | None) -> None:
            self.direct[kind] = direct

        if direct_send.install(sender, stream, gate.admit, taken) is None:
            self._log.warning("direct_send_unavailable", kind=kind)

    def sends_packets(self, kind: MediaKind) -> bool:
        """Whether ``kind`` comes from a pre-encoded packet source."""
        return kind in self._packet_mime

    def _forward_keyframe_requests(self, sender: RTCRtpSender, gate: _Gate) -> None:
        """aiortc answers PLI/FIR by calling ``sender._send_keyframe()``, which only flags its
        own encoder: on the packet path there is none, so tell the source too (this sender
        instance only; the gate's source now, after a :meth:`replace_source`)."""
        log = self._log

        def send_keyframe() -> None:
            try:
                gate.source.request_keyframe()  # type: ignore[attr-defined]
            except Exception:
                log.exception("keyframe_request_failed", kind=gate.kind)

        if keyframes.install(sender, send_keyframe) is None:
            self._log.warning("keyframe_forwarding_unavailable", kind=gate.kind)

    async def apply_answer(self, sdp: str) -> None:
        await self._set_answer(sdp)
        answer = parsed_description(self.pc, "remote")
        for kind, mime in self._packet_mime.items():
            answered = _answered_codec(answer, kind)
            if answered and answered != mime.lower():
                raise MediaError(
                    f"the media server answered {answered} for our {kind}, but the track sends "
                    f"{mime} packets: publish a {answered.split('/')[-1]} source to this room"
                )
        self._install_encoder(answer)

    def _install_encoder(self, answer: SessionDescription | None) -> None:
        """Give the video sender a cappable VP8 encoder before its first frame (aiortc creates
        one lazily, only if none is set; media cannot flow before ICE+DTLS, so none is yet)."""
        sender = self._senders.get("video")
        if sender is None or "video" in self._packet_mime:
            return
        codec = _answered_codec(answer, "video")
        handle = encoder_cap.install(sender) if codec == "video/vp8" else None
        if handle is None:
            self._log.debug("bitrate_cap_unavailable", codec=codec)
            return
        self._encoder = handle.encoder
        self.set_video_cap(self._cap_bps)

    def set_sending(self, kind: MediaKind, sending: bool) -> None:
        """Start or stop sending one kind without renegotiating (see :class:`_Gate`)."""
        gate = self._gates.get(kind)
        if gate is not None:
            gate.is_open = sending

    def replace_source(self, kind: MediaKind, track: MediaStreamTrack) -> MediaStreamTrack:
        """Publish ``track`` instead of this kind's source, without renegotiating (a scenario's
        ``switch_media``); returns the old source, which the caller stops. A packet source must
        carry the codec this leg negotiated; on the direct path the sender moves to the new
        stream (its RTP clock and sequence numbers go on), else aiortc reads the new track."""
        gate = self._gates.get(kind)
        if gate is None:
            raise MediaError(f"this leg publishes no {kind}")
        mime, was = packet_mime_type(track), self._packet_mime.get(kind)
        if (mime or "").lower() != (was or "").lower():
            raise MediaError(
                f"the new {kind} source sends {mime or 'raw frames'}, the published one "
                f"{was or 'raw frames'}: switch to a source of the same codec"
            )
        stream = getattr(track, "stream", None)
        direct = self.direct.get(kind)
        if was is not None and kind not in self.direct:
            raise MediaError(f"{kind} is not being sent yet: switch once the stream is published")
        old, gate.source = gate.source, track
        if direct is not None and isinstance(stream, PacketStream):
            direct.switch(stream)
        elif kind == "video" and mime is not None:  # aiortc's path: from the new keyframe on
            gate.wait_for_keyframe()
        return old

    def is_sending(self, kind: MediaKind) -> bool:
        gate = self._gates.get(kind)
        return gate is not None and gate.is_open

    def set_video_cap(self, bps: int | None) -> bool:
        """Cap (or uncap, with None) the video encoder's bitrate; False when there is no video
        to cap. Applied at once (aiortc rebuilds its encoder when the target moves by more than
        10 %), or when the answer comes; if the answer is not VP8 or aiortc's encoder could not
        be replaced, ``bitrate_cap_unavailable`` is logged and video stays uncapped.

        Pre-encoded video is sent at its source's fixed bitrate (REMB is ignored too): False."""
        self._cap_bps = bps
        if "video" in self._packet_mime:
            return False
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

    async def sample(self) -> dict[MediaKind, tuple[SendSample, SendSample]]:
        """Per kind: (the sample to compute rates from, a new one), from one ``getStats()``
        of the leg (see :class:`~bot.rtc.stats.RateWindow`)."""
        report = await self.pc.getStats()
        now = time.monotonic()
        found: dict[str, dict[str, Any]] = {kind: {} for kind in self._senders}
        for stat in report.values():
            kind = _stat(stat, "kind")
            if kind not in found:
                continue
            if stat.type == "outbound-rtp":
                found[kind]["packets_sent"] = int(_stat(stat, "packetsSent") or 0)
                found[kind]["bytes_sent"] = int(_stat(stat, "bytesSent") or 0)
            elif stat.type == "remote-inbound-rtp":
                jitter = _stat(stat, "jitter")
                fraction = _stat(stat, "fractionLost")
                found[kind]["packets_lost"] = _stat(stat, "packetsLost")
                found[kind]["fraction_lost"] = None if fraction is None else round(fraction / 256, 4)
                found[kind]["jitter_s"] = None if jitter is None else jitter / CLOCK_RATES[kind]
                found[kind]["round_trip_time"] = _stat(stat, "roundTripTime")
        out: dict[MediaKind, tuple[SendSample, SendSample]] = {}
        for kind in self._senders:
            current = SendSample(at=now, **found[kind])
            out[kind] = (self._samples[kind].add(current), current)
        return out

    async def aclose(self) -> None:
        """Idempotent. Does not stop the source tracks: their owner does."""
        await self.close_pc()
        for gate in self._gates.values():
            gate.stop()


__all__ = ["FLOOR_BITRATE_BPS", "PublishLeg"]
