"""The server's media side: the one module of ``bot.server`` that touches aiortc.

Every publish leg is an aiortc ``RTCPeerConnection`` answering the client's offer recvonly
(VP8 + Opus only); every subscribe leg answers a receive-only offer sendonly.

**Counting without decoding.** aiortc's ``RTCRtpReceiver`` reassembles encoded frames on the
event loop and hands them to a per-receiver decoder thread through a ``queue.Queue``. For the
server's own receivers only, :func:`_tap_receiver` replaces that queue (before the receiver
starts) with :class:`_EncodedFrameTap`, which counts each encoded frame and passes it to the
decoder only while a subscribe leg needs decoded frames, and wraps the receiver's RTP entry
point to count packets and payload bytes. Other ``RTCPeerConnection`` objects in the process
(the bots) are untouched. If a future aiortc renames those internals, the leg falls back to
decoding and counts decoded frames (``tap_encoded=False`` forces that path).

**Subscribe legs (for now).** :class:`RelayForwarder` gives each subscribe leg a
``MediaRelay`` proxy (unbuffered: latest frame wins) of the publisher's decoded track, which
the leg's own sender re-encodes (VP8/Opus): simple and correct (a new subscriber starts on a
fresh keyframe from its own encoder, and its PLIs are honoured) but it transcodes. Decoding
of a published kind runs only while a subscribe leg's sender is reading it; when it starts
mid-stream the first VP8 frames fail to decode (aiortc logs a warning), aiortc's receiver
sends the publisher a PLI and the keyframe arrives about 0.1 s later. A forwarder of encoded
packets can replace this behind the same two calls (``attach``/``detach``).

**How a leg ends.** ``end_reason`` tells a peer's orderly close (DTLS ``close_notify``: aiortc
closes the connection, state ``closed``) from a failure (ICE consent lost, state ``failed``)
and from the server closing it. The official client closes its peer connections *before*
``unpublish``, so a peer close is a normal end, not a media failure.

**Bandwidth.** The same taps feed each publish leg's :class:`~.bandwidth.PublishMonitor`
(sequence numbers, timestamps, arrival times, sizes; the publisher's RTCP sender reports), and
a tap on each subscribe leg's senders feeds its :class:`~.bandwidth.SubscribeMonitor` with the
subscriber's receiver reports. :meth:`MediaServer.bandwidth_tick` judges them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtcpRrPacket, RtcpSrPacket
from aiortc.sdp import SessionDescription, candidate_from_sdp

from bot.proto import Answer, Candidate, ErrorCode, IceServer

from .bandwidth import BandwidthSettings, PublishMonitor, RtpMeter, SubscribeMonitor, Verdict, WindowStats
from .errors import MediaError

log = structlog.get_logger(__name__)

MediaKind = Literal["audio", "video"]
KINDS: tuple[MediaKind, ...] = ("audio", "video")
# The official client rewrites answers listing H264 and Chrome then rejects them
# (PROTOCOL.md section 4): answer VP8 and Opus only.
ALLOWED_MIME = {"audio": "audio/opus", "video": "video/vp8"}
LegState = Literal["new", "connecting", "connected", "failed", "closed"]
EndReason = Literal["peer_closed", "failed", "server_closed"]
CLOCK_RATES = {"audio": 48000, "video": 90000}


@dataclass(kw_only=True)
class Received:
    """What the server received for one kind of one stream."""

    packets: int = 0
    bytes: int = 0  # RTP payload bytes
    frames: int = 0  # complete encoded frames (decoded frames on the fallback path)

    def to_json(self) -> dict[str, int]:
        return {"packets": self.packets, "bytes": self.bytes, "frames": self.frames}


def rtc_configuration(ice_servers: Sequence[IceServer]) -> RTCConfiguration:
    """An explicit (possibly empty) list: aiortc's default would reach out to Google STUN."""
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=s.urls, username=s.username, credential=s.credential) for s in ice_servers
        ]
    )


# --------------------------------------------------------------------------- receive taps


class _EncodedFrameTap(queue.Queue[Any]):
    """Stands in for an ``RTCRtpReceiver``'s decoder queue: counts encoded frames and lets
    them through to the decoder thread only while ``decode`` is set."""

    def __init__(self, received: Received) -> None:
        super().__init__()
        self.received = received
        self.decode = False

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:  # the receiver stopping: let the decoder thread end the track
            super().put(item, block, timeout)
            return
        self.received.frames += 1
        if self.decode:
            super().put(item, block, timeout)


_DECODER_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"


def _tap_receiver(
    receiver: RTCRtpReceiver, received: Received, *, frames: bool, meter: RtpMeter | None = None
) -> bool:
    """Count packets (and, with ``frames``, encoded frames) on this one receiver; feed
    ``meter`` every RTP packet and the sender's RTCP sender reports.

    Must run before the receiver starts (``receive()`` hands the queue to the decoder
    thread). Returns whether encoded frames are counted (else the caller counts decoded ones).
    """
    handle_rtp = getattr(receiver, "_handle_rtp_packet", None)
    if handle_rtp is not None:

        async def counting(packet: Any, arrival_time_ms: int) -> None:
            size = len(packet.payload)
            received.packets += 1
            received.bytes += size
            if meter is not None:
                meter.on_rtp(packet.ssrc, packet.sequence_number, packet.timestamp, arrival_time_ms, size)
            await handle_rtp(packet, arrival_time_ms=arrival_time_ms)

        receiver._handle_rtp_packet = counting  # type: ignore[method-assign]
    handle_rtcp = getattr(receiver, "_handle_rtcp_packet", None)
    if handle_rtcp is not None and meter is not None:

        async def reports(packet: Any) -> None:
            if isinstance(packet, RtcpSrPacket):
                info = packet.sender_info
                meter.on_sender_report(packet.ssrc, info.ntp_timestamp, info.octet_count, time.monotonic())
            await handle_rtcp(packet)

        receiver._handle_rtcp_packet = reports  # type: ignore[method-assign]
    if not frames or not isinstance(getattr(receiver, _DECODER_QUEUE_ATTR, None), queue.Queue):
        return False
    setattr(receiver, _DECODER_QUEUE_ATTR, _EncodedFrameTap(received))
    return True


# --------------------------------------------------------------------------- forwarding


class _ForwardedTrack(MediaStreamTrack):
    """A subscribe leg's view of one published track. Decoding for it starts only when its
    sender first asks for a frame: frames decoded for a leg that never connects would pile
    up unread in aiortc's unbounded track queue."""

    def __init__(self, forwarder: RelayForwarder, kind: str, proxy: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = kind
        self.active = False
        self._forwarder = forwarder
        self._proxy = proxy

    async def recv(self) -> Any:
        if not self.active:
            self.active = True
            self._forwarder._update(self.kind)
        return await self._proxy.recv()

    def stop(self) -> None:
        super().stop()
        self._proxy.stop()


class RelayForwarder:
    """Decoded frames of one publish leg, shared by its subscribe legs through a MediaRelay.

    ``attach(kind)`` returns a track for a subscribe leg's sender; ``detach(track)`` gives it
    back. Decoding is on while a kind has at least one attached track that is being read.
    """

    def __init__(self) -> None:
        self._relay = MediaRelay()
        self._sources: dict[str, MediaStreamTrack] = {}
        self._taps: dict[str, _EncodedFrameTap] = {}
        self._attached: dict[str, set[_ForwardedTrack]] = {k: set() for k in KINDS}

    def add_source(self, kind: str, track: MediaStreamTrack, tap: _EncodedFrameTap | None) -> None:
        self._sources[kind] = track
        if tap is not None:
            self._taps[kind] = tap

    def counting_proxy(self, kind: str) -> MediaStreamTrack | None:
        """A proxy that the fallback counter reads (decoding always on in that case)."""
        source = self._sources.get(kind)
        return None if source is None else self._relay.subscribe(source, buffered=False)

    def attach(self, kind: str) -> MediaStreamTrack | None:
        source = self._sources.get(kind)
        if source is None:
            return None
        track = _ForwardedTrack(self, kind, self._relay.subscribe(source, buffered=False))
        self._attached[kind].add(track)
        return track

    def detach(self, track: MediaStreamTrack) -> None:
        for kind, tracks in self._attached.items():
            if track in tracks:
                tracks.discard(track)
                track.stop()
                self._update(kind)

    def decoding(self, kind: str) -> bool:
        """Whether received frames of ``kind`` are decoded now (always, without a tap)."""
        tap = self._taps.get(kind)
        return kind in self._sources and (tap is None or tap.decode)

    def _update(self, kind: str) -> None:
        tap = self._taps.get(kind)
        if tap is not None:
            tap.decode = any(t.active for t in self._attached[kind])


# --------------------------------------------------------------------------- legs


class _Leg:
    """One server-side peer connection answering one client offer."""

    role: str = "leg"

    def __init__(self, stream_id: int, configuration: RTCConfiguration) -> None:
        self.stream_id = stream_id
        self.pc = RTCPeerConnection(configuration)
        self.state: LegState = "new"
        self.end_reason: EndReason | None = None
        self._connected = asyncio.Event()
        self._ended = asyncio.Event()
        self._closing = False
        self.pc.on("connectionstatechange", self._on_state)

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self.state = "connected"
            self._on_connected()
            self._connected.set()
        elif state in ("failed", "closed"):
            if self.end_reason is None:
                if self._closing:
                    self.end_reason = "server_closed"
                else:
                    # aiortc closes the connection itself when the peer's DTLS says
                    # close_notify; ICE consent lost (or DTLS broken) is "failed"
                    self.end_reason = "peer_closed" if state == "closed" else "failed"
            self.state = "failed" if self.end_reason == "failed" else "closed"
            self._ended.set()
            self._connected.set()  # wake waiters; they check ``state``
        elif state == "connecting" and self.state == "new":
            self.state = "connecting"

    def _on_connected(self) -> None:
        """Hook: the media is up."""

    @property
    def closed_by_server(self) -> bool:
        return self._closing

    async def _apply_offer(self, sdp: str, prepare: Callable[[str], None]) -> None:
        """Pre-create one transceiver per offered kind (``prepare``), then apply the offer.

        Codec preferences only count if set before ``setRemoteDescription`` negotiates.
        """
        try:
            parsed = SessionDescription.parse(sdp)
        except Exception as exc:  # aiortc's parser raises whatever the text trips on
            raise MediaError(f"offer SDP does not parse: {exc!r}") from None
        kinds = [media.kind for media in parsed.media if media.kind in KINDS]
        if not kinds:
            raise MediaError("offer has no audio or video m-line")
        for kind in kinds:
            prepare(kind)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:  # OperationError (no common codec), ValueError, ...
            raise MediaError(f"offer refused: {exc}") from None

    async def answer(self) -> Answer:
        """Create and apply the answer; its SDP carries all server candidates."""
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        local = self.pc.localDescription
        return Answer(sdp=local.sdp, media=media_summary(local.sdp))

    async def add_candidate(self, candidate: Candidate) -> None:
        """A trickled client candidate (``a=candidate:...`` or ``candidate:...``)."""
        line = candidate.candidate.strip()
        line = line.removeprefix("a=").removeprefix("candidate:")
        try:
            ice = candidate_from_sdp(line)
        except (AssertionError, ValueError, IndexError):
            raise MediaError(
                f"candidate does not parse: {line[:80]!r}", ErrorCode.MALFORMED_REQUEST
            ) from None
        ice.sdpMid = candidate.sdp_mid
        ice.sdpMLineIndex = candidate.sdp_mline_index
        try:
            await self.pc.addIceCandidate(ice)
        except Exception as exc:  # aioice refuses e.g. unresolvable hosts
            raise MediaError(f"candidate refused: {exc}", ErrorCode.MALFORMED_REQUEST) from None

    async def wait_connected(self) -> bool:
        """Until the leg is connected (True) or has ended (False)."""
        await self._connected.wait()
        return self.state == "connected"

    async def wait_ended(self) -> None:
        await self._ended.wait()

    async def aclose(self) -> None:
        """Close the peer connection (idempotent)."""
        self._closing = True
        if self.end_reason is None:
            self.end_reason = "server_closed"
        # shielded: a cancelled caller must not leave the ICE/DTLS transports running
        await asyncio.shield(self.pc.close())
        self.state = "closed"
        self._ended.set()
        self._connected.set()


class PublishLeg(_Leg):
    """Receives a client's published audio/video and counts what arrives."""

    role = "publish"

    def __init__(
        self,
        stream_id: int,
        configuration: RTCConfiguration,
        *,
        tap_encoded: bool = True,
        bandwidth: BandwidthSettings | None = None,
    ) -> None:
        super().__init__(stream_id, configuration)
        self.received: dict[str, Received] = {k: Received() for k in KINDS}
        self.forwarder = RelayForwarder()
        self.monitor = PublishMonitor(bandwidth or BandwidthSettings(), time.monotonic())
        self._tap_encoded = tap_encoded
        self._counters: list[asyncio.Task[None]] = []

    def _on_connected(self) -> None:
        self.monitor.detector.reset(time.monotonic())

    async def accept_offer(self, sdp: str) -> None:
        taps: dict[str, _EncodedFrameTap | None] = {}

        def prepare(kind: str) -> None:
            transceiver = self.pc.addTransceiver(kind, direction="recvonly")
            transceiver.setCodecPreferences(_preferred(RTCRtpReceiver.getCapabilities(kind)))
            tapped = _tap_receiver(
                transceiver.receiver,
                self.received[kind],
                frames=self._tap_encoded,
                meter=self.monitor.meters[kind],
            )
            taps[kind] = getattr(transceiver.receiver, _DECODER_QUEUE_ATTR) if tapped else None

        await self._apply_offer(sdp, prepare)
        for transceiver in self.pc.getTransceivers():
            track = transceiver.receiver.track
            if track is None or transceiver.kind not in taps:
                continue
            tap = taps[transceiver.kind]
            self.forwarder.add_source(transceiver.kind, track, tap)
            if tap is None:  # fallback: decode and count decoded frames
                self._counters.append(
                    asyncio.create_task(
                        self._count_decoded(transceiver.kind),
                        name=f"count-decoded-{self.stream_id}-{transceiver.kind}",
                    )
                )

    async def _count_decoded(self, kind: str) -> None:
        proxy = self.forwarder.counting_proxy(kind)
        if proxy is None:
            return
        received = self.received[kind]
        with contextlib.suppress(MediaStreamError):
            while True:
                await proxy.recv()
                received.frames += 1

    @property
    def decoding(self) -> dict[str, bool]:
        """Per kind, whether this leg's received frames are being decoded (for subscribers)."""
        return {k: self.forwarder.decoding(k) for k in KINDS}

    def received_json(self) -> dict[str, dict[str, int]]:
        return {k: r.to_json() for k, r in self.received.items()}

    async def aclose(self) -> None:
        await super().aclose()
        for task in self._counters:
            task.cancel()
        for task in self._counters:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._counters.clear()


class SubscribeLeg(_Leg):
    """Sends one published stream to one subscriber (tracks from the publisher's forwarder)."""

    role = "subscribe"

    def __init__(
        self,
        stream_id: int,
        client_id: str,
        source: PublishLeg,
        configuration: RTCConfiguration,
        *,
        bandwidth: BandwidthSettings | None = None,
    ) -> None:
        super().__init__(stream_id, configuration)
        self.client_id = client_id
        self.source = source
        self.monitor = SubscribeMonitor(bandwidth or BandwidthSettings(), time.monotonic())
        self._tracks: list[MediaStreamTrack] = []

    def _on_connected(self) -> None:
        self.monitor.detector.reset(time.monotonic())

    async def accept_offer(self, sdp: str) -> None:
        def prepare(kind: str) -> None:
            track = self.source.forwarder.attach(kind)
            if track is not None:
                self._tracks.append(track)
            transceiver = self.pc.addTransceiver(track or kind, direction="sendonly")
            transceiver.setCodecPreferences(_preferred(RTCRtpSender.getCapabilities(kind)))
            _tap_sender(transceiver.sender, kind, self.monitor)

        await self._apply_offer(sdp, prepare)

    async def aclose(self) -> None:
        for track in self._tracks:
            self.source.forwarder.detach(track)
        self._tracks.clear()
        await super().aclose()


def _tap_sender(sender: RTCRtpSender, kind: str, monitor: SubscribeMonitor) -> None:
    """Feed ``monitor`` the receiver reports the subscriber sends about this sender's stream."""
    handle_rtcp = getattr(sender, "_handle_rtcp_packet", None)
    if handle_rtcp is None:
        return
    clock_rate = CLOCK_RATES.get(kind, 90000)

    async def reports(packet: Any) -> None:
        if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            now = time.monotonic()
            for report in packet.reports:
                if report.ssrc == sender._ssrc:
                    monitor.on_receiver_report(
                        report.ssrc,
                        clock_rate,
                        report.packets_lost,
                        report.highest_sequence,
                        report.jitter,
                        now,
                    )
        await handle_rtcp(packet)

    sender._handle_rtcp_packet = reports  # type: ignore[method-assign]


def _preferred(capabilities: Any) -> list[Any]:
    return [c for c in capabilities.codecs if c.mimeType.lower() in ALLOWED_MIME.values()]


def media_summary(sdp: str) -> list[dict[str, Any]]:
    """``msg.media`` of an answer: the codecs of each m-line (the official client needs it)."""
    out: list[dict[str, Any]] = []
    for media in SessionDescription.parse(sdp).media:
        if media.kind not in KINDS:
            continue
        out.append(
            {
                "media": media.kind,
                "codecs": [
                    {
                        "name": c.mimeType.split("/", 1)[1],
                        "payload": c.payloadType,
                        "rate": c.clockRate,
                    }
                    for c in media.rtp.codecs
                ],
            }
        )
    return out


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True, kw_only=True)
class BandwidthChange:
    """A leg's detector changed its verdict. ``subscriber`` is set for a subscribe leg."""

    room_id: str
    stream_id: int
    verdict: Verdict
    stats: WindowStats | None
    reasons: tuple[str, ...] = ()
    subscriber: str | None = None


class MediaServer:
    """All legs of one room server, keyed by room and stream (and subscriber).

    The server's own peer connections gather host candidates only (``ice_servers`` is empty
    unless given): a relay-only client reaches them through its TURN relay."""

    def __init__(
        self,
        *,
        ice_servers: Iterable[IceServer] = (),
        tap_encoded: bool = True,
        bandwidth: BandwidthSettings | None = None,
    ) -> None:
        self._ice_servers = tuple(ice_servers)
        self._tap_encoded = tap_encoded
        self.bandwidth = bandwidth or BandwidthSettings()
        self._publish: dict[tuple[str, int], PublishLeg] = {}
        self._subscribe: dict[tuple[str, str, int], SubscribeLeg] = {}

    def _configuration(self) -> RTCConfiguration:
        return rtc_configuration(self._ice_servers)

    # ------------------------------------------------------------------ publish legs

    async def open_publish(self, room_id: str, stream_id: int, sdp: str) -> PublishLeg:
        """A new publish leg for the offer; a previous leg of that stream is replaced."""
        await self.close_publish(room_id, stream_id)
        leg = PublishLeg(
            stream_id, self._configuration(), tap_encoded=self._tap_encoded, bandwidth=self.bandwidth
        )
        try:
            await leg.accept_offer(sdp)
        except MediaError:
            await leg.aclose()
            raise
        self._publish[(room_id, stream_id)] = leg
        return leg

    def publish_leg(self, room_id: str, stream_id: int) -> PublishLeg | None:
        return self._publish.get((room_id, stream_id))

    async def close_publish(self, room_id: str, stream_id: int, leg: PublishLeg | None = None) -> None:
        """Close a publish leg and every subscribe leg fed by it (``leg``: only if current)."""
        current = self._publish.get((room_id, stream_id))
        if current is None or (leg is not None and current is not leg):
            return
        del self._publish[(room_id, stream_id)]
        for key in [k for k, s in self._subscribe.items() if s.source is current]:
            await self._subscribe.pop(key).aclose()
        await current.aclose()

    def received(self, room_id: str, stream_id: int) -> dict[str, dict[str, int]]:
        leg = self._publish.get((room_id, stream_id))
        if leg is None:
            return {k: Received().to_json() for k in KINDS}
        return leg.received_json()

    # ------------------------------------------------------------------ subscribe legs

    async def open_subscribe(self, room_id: str, client_id: str, stream_id: int, sdp: str) -> SubscribeLeg:
        source = self._publish.get((room_id, stream_id))
        if source is None:
            raise MediaError(f"stream {stream_id} has no media", ErrorCode.STREAM_NOT_FOUND)
        await self.close_subscribe(room_id, client_id, stream_id)
        leg = SubscribeLeg(stream_id, client_id, source, self._configuration(), bandwidth=self.bandwidth)
        try:
            await leg.accept_offer(sdp)
        except MediaError:
            await leg.aclose()
            raise
        self._subscribe[(room_id, client_id, stream_id)] = leg
        return leg

    def subscribe_leg(self, room_id: str, client_id: str, stream_id: int) -> SubscribeLeg | None:
        return self._subscribe.get((room_id, client_id, stream_id))

    def subscriptions(self, room_id: str, client_id: str) -> list[SubscribeLeg]:
        return [leg for (r, c, _), leg in self._subscribe.items() if r == room_id and c == client_id]

    async def close_subscribe(
        self, room_id: str, client_id: str, stream_id: int, leg: SubscribeLeg | None = None
    ) -> None:
        current = self._subscribe.get((room_id, client_id, stream_id))
        if current is None or (leg is not None and current is not leg):
            return
        del self._subscribe[(room_id, client_id, stream_id)]
        await current.aclose()

    # ------------------------------------------------------------------ bulk

    async def close_client(self, room_id: str, client_id: str, stream_ids: Iterable[int]) -> None:
        """Everything a leaving participant owned: its publish and subscribe legs."""
        for stream_id in stream_ids:
            await self.close_publish(room_id, stream_id)
        await self.close_subscriptions(room_id, client_id)

    async def close_subscriptions(self, room_id: str, client_id: str) -> None:
        """Every subscribe leg of one participant (a rejoin subscribes again)."""
        for key in [k for k in self._subscribe if k[0] == room_id and k[1] == client_id]:
            await self._subscribe.pop(key).aclose()

    # ------------------------------------------------------------------ bandwidth

    def bandwidth_tick(self, now: float) -> list[BandwidthChange]:
        """Sample and judge every connected leg; the verdicts that changed."""
        changes: list[BandwidthChange] = []
        for (room_id, stream_id), leg in list(self._publish.items()):
            if leg.state != "connected":
                continue
            verdict = leg.monitor.tick(now)
            if verdict is not None:
                detector = leg.monitor.detector
                changes.append(
                    BandwidthChange(
                        room_id=room_id,
                        stream_id=stream_id,
                        verdict=verdict,
                        stats=detector.last,
                        reasons=tuple(detector.reasons),
                    )
                )
        for (room_id, client_id, stream_id), sub in list(self._subscribe.items()):
            if sub.state != "connected":
                continue
            verdict = sub.monitor.tick(now)
            if verdict is not None:
                detector = sub.monitor.detector
                changes.append(
                    BandwidthChange(
                        room_id=room_id,
                        stream_id=stream_id,
                        verdict=verdict,
                        stats=detector.last,
                        reasons=tuple(detector.reasons),
                        subscriber=client_id,
                    )
                )
        return changes

    def reset_detectors(self, room_id: str, stream_ids: Iterable[int]) -> None:
        """Judge these publish legs afresh (after an injected verdict)."""
        now = time.monotonic()
        for stream_id in stream_ids:
            leg = self._publish.get((room_id, stream_id))
            if leg is not None:
                leg.monitor.detector.reset(now)

    def bandwidth_view(self, room_id: str, stream_id: int) -> dict[str, Any] | None:
        """The publish leg's last window and verdict (for the room view)."""
        leg = self._publish.get((room_id, stream_id))
        if leg is None:
            return None
        detector = leg.monitor.detector
        return {
            "state": "low" if detector.low else "ok",
            "reasons": list(detector.reasons),
            "window": None if detector.last is None else detector.last.to_json(),
        }

    @property
    def leg_count(self) -> int:
        return len(self._publish) + len(self._subscribe)

    async def aclose(self) -> None:
        """Close every peer connection (idempotent)."""
        subscribe, self._subscribe = list(self._subscribe.values()), {}
        publish, self._publish = list(self._publish.values()), {}
        for leg in [*subscribe, *publish]:
            try:
                await leg.aclose()
            except Exception:
                log.exception("media_leg_close_failed", stream_id=leg.stream_id, role=leg.role)
