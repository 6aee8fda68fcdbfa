"""Bandwidth verdicts -> wire events (PROTOCOL.md section 7; payloads in :mod:`.bandwidth`).

A ticker judges every leg each ``tick_s``; a publish leg's change reaches its owner
(``publisher-bw``) and the others (``bw-alert``, ``type: "publisher"``), a subscribe leg's change
its subscriber (``bw-alert``, ``type: "subscriber"``). The emulator's injection goes through the
same :meth:`BandwidthEvents.publisher_bandwidth`; an injected alert holds the detector's
verdicts for that participant until an injected restore.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import structlog

from bot.proto import BandwidthEvent

from .bandwidth import Verdict, publisher_event, stream_event
from .errors import ClientNotFound
from .media import BandwidthChange, MediaServer
from .outbox import Outbox
from .rooms import Participant, Room, RoomRegistry, Stream
from .stats import SignallingStats
from .tasks import Tasks

log = structlog.get_logger(__name__)

Json = dict[str, Any]

DEFAULT_RESTORE_KBPS = 1000  # an injected restore without a bandwidth nor a measurement


class BandwidthEvents:
    """The detector's loop and the emulator's injection, as the events clients hear."""

    def __init__(
        self,
        *,
        rooms: RoomRegistry,
        media: MediaServer,
        outbox: Outbox,
        tasks: Tasks,
        stats: SignallingStats,
    ) -> None:
        self.rooms = rooms
        self.media = media
        self.outbox = outbox
        self.tasks = tasks
        self.stats = stats

    def start(self) -> None:
        """Start the detector's ticker (if the detector is enabled)."""
        if self.media.bandwidth.enabled:
            self.tasks.spawn(self._loop(), name="bandwidth-detector", where="bandwidth_loop")

    async def _loop(self) -> None:
        tick = self.media.bandwidth.tick_s
        while True:
            await asyncio.sleep(tick)
            for change in self.media.bandwidth_tick(time.monotonic()):
                try:
                    await self.on_change(change)
                except Exception as exc:
                    log.exception("bandwidth_event_failed", room=change.room_id, stream_id=change.stream_id)
                    self.tasks.failures.record("bandwidth_loop", exc)

    async def on_change(self, change: BandwidthChange) -> None:
        """One leg's verdict changed: tell whoever that leg concerns."""
        room = self.rooms.find(change.room_id)
        stream = None if room is None else room.streams.get(change.stream_id)
        if room is None or stream is None:
            return
        window = None if change.stats is None else change.stats.to_json()
        if change.subscriber is not None:
            subscriber = room.participants.get(change.subscriber)
            if subscriber is None:
                return
            event = BandwidthEvent(**stream_event(stream.id, stream.name, change.verdict, "subscriber"))
            await self.outbox.send(subscriber, event)
            self._count_verdict(change.verdict, "subscriber")
            log.info(
                "bandwidth_" + change.verdict,
                room=room.room_id,
                client_id=subscriber.client_id,
                stream_id=stream.id,
                leg="subscribe",
                reasons=list(change.reasons),
                window=window,
            )
            return
        owner = room.participants.get(stream.client_id)
        if owner is None or owner.away or stream.id in owner.stale_streams:
            return
        if owner.bw_forced:
            log.debug(
                "bandwidth_verdict_held", room=room.room_id, stream_id=stream.id, verdict=change.verdict
            )
            return
        kbps = 0.0
        if change.stats is not None:  # an alert: what the link carries now; a restore: the window
            recent = change.stats.recent_kbps
            kbps = recent if change.verdict == "low" and recent is not None else change.stats.kbps
        await self.publisher_bandwidth(
            room,
            owner,
            [stream],
            change.verdict,
            kbps,
            source="detector",
            reasons=change.reasons,
            window=window,
        )

    async def publisher_bandwidth(
        self,
        room: Room,
        participant: Participant,
        streams: Sequence[Stream],
        verdict: Verdict,
        kbps: float,
        *,
        source: str,
        reasons: Sequence[str] = (),
        window: Json | None = None,
    ) -> None:
        """A participant's uplink is low / restored: ``publisher-bw`` to it (when its state
        changes, or always when injected), ``bw-alert`` per announced stream to the others."""
        self._count_verdict(verdict, "publisher")
        was_low = bool(participant.bw_low)
        for stream in streams:
            if verdict == "low":
                participant.bw_low.add(stream.id)
            else:
                participant.bw_low.discard(stream.id)
        if source == "injected" or was_low != bool(participant.bw_low):
            payload = publisher_event(kbps, restored=verdict == "restored")
            await self.outbox.send(participant, BandwidthEvent(**payload))
        for stream in streams:
            if stream.announced:
                event = BandwidthEvent(**stream_event(stream.id, stream.name, verdict, "publisher"))
                await self.outbox.broadcast(room, event, exclude=participant.client_id)
        log.info(
            "bandwidth_" + verdict,
            room=room.room_id,
            client_id=participant.client_id,
            stream_ids=[s.id for s in streams],
            leg="publish",
            kbps=round(kbps),
            source=source,
            reasons=list(reasons),
            window=window,
        )

    def _count_verdict(self, verdict: Verdict, kind: str) -> None:
        if verdict == "low":
            self.stats.alerts[kind] = self.stats.alerts.get(kind, 0) + 1
        else:
            self.stats.restores += 1

    async def inject(
        self, room_id: str, client_ids: Sequence[str], *, kbps: float | None, restored: bool
    ) -> None:
        """The emulator's bandwidth injection: exactly the detector's events for these clients.
        An alert holds the detector's own verdicts for them until an injected restore."""
        room = self.rooms.get(room_id)
        targets = []
        for client_id in client_ids:
            participant = room.participants.get(client_id)
            if participant is None:
                raise ClientNotFound(f"no client {client_id!r} in room {room_id!r}")
            targets.append(participant)
        for participant in targets:
            streams = [
                s
                for s in room.streams.values()
                if s.client_id == participant.client_id and s.id not in participant.stale_streams
            ]
            if restored:
                participant.bw_forced = False
                value = kbps if kbps is not None else self._measured_kbps(room, streams)
                await self.publisher_bandwidth(
                    room, participant, streams, "restored", value, source="injected"
                )
                self.media.reset_detectors(room.room_id, [s.id for s in streams])
            else:
                participant.bw_forced = True
                await self.publisher_bandwidth(
                    room, participant, streams, "low", kbps or 1, source="injected"
                )

    def _measured_kbps(self, room: Room, streams: Sequence[Stream]) -> float:
        total = 0.0
        for stream in streams:
            leg = self.media.publish_leg(room.room_id, stream.id)
            last = None if leg is None else leg.monitor.detector.last
            total += 0.0 if last is None else last.kbps
        return total or DEFAULT_RESTORE_KBPS
