"""The server's media side: the registry of legs (:class:`MediaServer`); the legs are in
:mod:`.legs`, the forwarders in :mod:`.forwarders`, the aiortc reach-ins in ``bot.webrtc``.

Every publish leg is an aiortc ``RTCPeerConnection`` answering the client's offer recvonly
(VP8 + Opus only); every subscribe leg answers a receive-only offer sendonly.

**Forwarding without decoding.** aiortc's ``RTCRtpReceiver`` reassembles encoded frames in a
jitter buffer on the event loop and hands them to a per-receiver decoder thread. For the
server's own receivers only (per-instance replacements before the receiver starts; no class
is patched, so the bots in the same process keep aiortc's behaviour), :func:`~.forwarders._forward_from`
wraps the jitter buffer so that each complete frame (a VP8 frame, an Opus packet) goes to the
leg's :class:`~.forwarders.PacketForwarder` instead, and puts ``bot.webrtc``'s receive tap in
place of the decoder queue (aiortc's decoder thread ends as it starts; anything that would be
decoded is counted). :func:`~.legs._count_receiver` wraps the RTP and RTCP entry points to count packets
and payload bytes and to feed the bandwidth meters.

The forwarder gives each subscribe leg one :class:`~.forwarding.ForwardTrack` per kind, whose
``recv()`` returns ``av.Packet``: aiortc's sender then packetizes without encoding. Bounded
per-subscriber queues, start at a keyframe, drop to the next keyframe when a subscriber falls
behind: see :mod:`.forwarding`. A stream nobody subscribes to is received, counted and dropped.

**Keyframes.** aiortc ignores PLI/FIR on the packet path; each forwarding subscribe leg's video
sender has its ``_send_keyframe`` replaced (on that instance) so that a subscriber's PLI/FIR
becomes a request to the publisher: the publish leg's receiver sends an RTCP PLI
(``_send_rtcp_pli``) for the publisher's SSRC, at most one per 300 ms. A subscribe leg asks
too when its sender starts reading (the leg is connected), so a live encoder's keyframe
reaches a new subscriber within a fraction of a second.

**The fallback.** If aiortc's receiver internals are not the expected ones (a future aiortc),
or with ``tap_encoded=False``, a leg uses :class:`DecodingForwarder`: aiortc decodes, a
``MediaRelay`` shares the decoded track and each subscribe leg re-encodes it. The server logs
``media_forwarding_decodes`` once; the room view shows ``forwarding: "decoded"`` and
``decoded_frames`` counts.

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

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from aiortc import (
    RTCConfiguration,
)

from bot.proto import ErrorCode, IceServer

from .bandwidth import BandwidthSettings, Verdict, WindowStats
from .errors import MediaError
from .forwarders import KINDS, Received
from .forwarding import Forwarded
from .legs import PublishLeg, SubscribeLeg, rtc_configuration

log = structlog.get_logger("bot.server.media")


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
        lean_intake: bool = True,
        bandwidth: BandwidthSettings | None = None,
    ) -> None:
        self._ice_servers = tuple(ice_servers)
        self._tap_encoded = tap_encoded
        self._lean_intake = lean_intake
        self.bandwidth = bandwidth or BandwidthSettings()
        self.forwarded = Forwarded()
        """Everything forwarded by this server, closed legs included (for the metrics)."""
        self._publish: dict[tuple[str, int], PublishLeg] = {}
        self._subscribe: dict[tuple[str, str, int], SubscribeLeg] = {}
        self._fallback_logged = False

    def _on_forward(self, size: int) -> None:
        self.forwarded.packets += 1
        self.forwarded.bytes += size

    def _configuration(self) -> RTCConfiguration:
        return rtc_configuration(self._ice_servers)

    # ------------------------------------------------------------------ publish legs

    async def open_publish(self, room_id: str, stream_id: int, sdp: str) -> PublishLeg:
        """A new publish leg for the offer; a previous leg of that stream is replaced."""
        await self.close_publish(room_id, stream_id)
        leg = PublishLeg(
            stream_id,
            self._configuration(),
            tap_encoded=self._tap_encoded,
            lean_intake=self._lean_intake,
            bandwidth=self.bandwidth,
            on_forward=self._on_forward,
        )
        try:
            await leg.accept_offer(sdp)
        except MediaError:
            await leg.aclose()
            raise
        if leg.forwarder.mode == "decoded" and not self._fallback_logged:
            self._fallback_logged = True
            log.warning(
                "media_forwarding_decodes",
                reason="tap_encoded=False" if not self._tap_encoded else "aiortc receiver internals differ",
                detail="subscribers get decoded and re-encoded media (MediaRelay); CPU heavy",
            )
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

    def forwarding_view(self, room_id: str, stream_id: int) -> dict[str, Any]:
        """The room view's forwarding fields of one stream: ``forwarded`` per kind (all of
        its subscribers, closed legs included), ``subscribers`` (connected subscribe legs),
        ``decoded_frames`` (0 on the forwarding path), ``forwarding`` (``packets`` or the
        ``decoded`` fallback), ``keyframe_requests`` (PLIs sent to the publisher) and
        ``lean_packets`` (RTP counted by the lean intake,
        :mod:`bot.webrtc.patches.lean_intake`; ``null`` where it is off)."""
        leg = self._publish.get((room_id, stream_id))
        if leg is None:
            return {
                "forwarded": {k: Forwarded().to_json() for k in KINDS},
                "subscribers": 0,
                "decoded_frames": 0,
                "forwarding": None,
                "keyframe_requests": 0,
                "lean_packets": None,
            }
        subscribers = sum(1 for s in self._subscribe.values() if s.source is leg and s.state == "connected")
        return {
            "forwarded": leg.forwarded_json(),
            "subscribers": subscribers,
            "decoded_frames": leg.decoded_frames,
            "forwarding": leg.forwarder.mode,
            "keyframe_requests": leg.keyframe_requests_sent,
            "lean_packets": None if leg.intake is None else leg.intake.lean_packets,
        }

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

    def resuming(self, room_id: str, stream_ids: Iterable[int], kind: str) -> None:
        """A publisher resumes ``kind`` (it unmuted): that kind warms up before it is judged."""
        for stream_id in stream_ids:
            leg = self._publish.get((room_id, stream_id))
            meter = None if leg is None else leg.monitor.meters.get(kind)
            if meter is not None:
                meter.restart()

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

    def connected_legs(self) -> tuple[int, int]:
        """(publish legs, subscribe legs) whose media is up now."""
        publish = sum(1 for leg in list(self._publish.values()) if leg.state == "connected")
        subscribe = sum(1 for leg in list(self._subscribe.values()) if leg.state == "connected")
        return publish, subscribe

    async def aclose(self) -> None:
        """Close every peer connection (idempotent)."""
        subscribe, self._subscribe = list(self._subscribe.values()), {}
        publish, self._publish = list(self._publish.values()), {}
        for leg in [*subscribe, *publish]:
            try:
                await leg.aclose()
            except Exception:
                log.exception("media_leg_close_failed", stream_id=leg.stream_id, role=leg.role)


__all__ = ["BandwidthChange", "MediaServer", "PublishLeg", "SubscribeLeg"]
