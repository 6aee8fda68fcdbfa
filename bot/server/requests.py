"""A joined participant's requests: publish, subscribe, mutes, drop, and the media legs that
``signaling_message`` offers open (PROTOCOL.md sections 4 and 5).

Each handler takes the session and its decoded :mod:`bot.proto` event and returns the ack;
a :class:`~.errors.ServerError` becomes ``{result: code, msg}`` in :mod:`.signalling`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog

from bot.proto import (
    Ack,
    Candidate,
    DropRequest,
    ErrorCode,
    GetMaxTalkers,
    LogClientEvent,
    MediaEngineConnecting,
    Offer,
    PublishRequest,
    Ready,
    SelfMuteRequest,
    SignalingMessage,
    StreamAdded,
    SubscribeRequest,
    UnpublishRequest,
    UnsubscribeRequest,
    UserMuteChanged,
)

from .errors import RequestRefused
from .media import MediaServer, PublishLeg, SubscribeLeg
from .outbox import Outbox
from .presence import Handler, Presences, Session
from .rooms import Participant, Room, RoomRegistry, Stream
from .tasks import Tasks

log = structlog.get_logger(__name__)

Json = dict[str, Any]
AckPayload = Json | None

DROP_GRACE_S = 1.0  # the SDK disconnects itself right after the drop ack
READY_TIMEOUT_S = 30.0  # the official client rejoins after 30 s without ``ready``


class Requests:
    """The handlers of a joined participant's requests, by event type."""

    def __init__(
        self,
        *,
        rooms: RoomRegistry,
        media: MediaServer,
        presences: Presences,
        outbox: Outbox,
        tasks: Tasks,
        max_talkers: int = 6,
    ) -> None:
        self.rooms = rooms
        self.media = media
        self.presences = presences
        self.outbox = outbox
        self.tasks = tasks
        self.max_talkers = max_talkers
        self.publish_gate: Callable[[Room, Participant], None] | None = None
        """Raises when this participant may not publish now (lecture mode without the floor)."""

    def handlers(self) -> dict[type, Handler]:
        return {
            GetMaxTalkers: self._on_get_max_talkers,
            LogClientEvent: self._on_log_client_event,
            PublishRequest: self._on_publish,
            SubscribeRequest: self._on_subscribe,
            SignalingMessage: self._on_signaling_message,
            UnpublishRequest: self._on_unpublish,
            UnsubscribeRequest: self._on_unsubscribe,
            DropRequest: self._on_drop,
            SelfMuteRequest: self._on_self_mute,
        }

    def _member(self, session: Session) -> tuple[Room, Participant]:
        seat = self.presences.seat(session)
        if seat is None:
            raise RequestRefused("not in a room", ErrorCode.NOT_JOINED)
        return seat

    # ------------------------------------------------------------------ small requests

    async def _on_get_max_talkers(self, session: Session, event: GetMaxTalkers) -> Json:
        room, _ = self._member(session)  # the room's own max_active_talkers (REST settings)
        value = room.settings.get("max_active_talkers", self.max_talkers)
        return Ack(fields={"maxTalkers": value if isinstance(value, int) else self.max_talkers}).to_payload()

    async def _on_log_client_event(self, session: Session, event: LogClientEvent) -> Json:
        log.debug("client_event", client_id=session.client_id, event_type=event.event_type)
        return Ack().to_payload()

    async def _on_self_mute(self, session: Session, event: SelfMuteRequest) -> Json:
        room, participant = self._member(session)
        if event.kind == "audio":
            participant.audio_muted = event.muted
        else:
            participant.video_muted = event.muted
        if not event.muted:
            owned = [s.id for s in room.streams.values() if s.client_id == participant.client_id]
            self.media.resuming(room.room_id, owned, event.kind)
        log.info(
            "participant_muted",
            room=room.room_id,
            client_id=participant.client_id,
            kind=event.kind,
            muted=event.muted,
        )
        relay = UserMuteChanged(
            kind=event.kind,
            muted=event.muted,
            client_id=participant.client_id,
            user=participant.user_info(),
        )
        await self.outbox.broadcast(room, relay, exclude=participant.client_id)
        return Ack().to_payload()

    async def _on_drop(self, session: Session, event: DropRequest) -> Json:
        self.tasks.spawn(self._drop(session), name=f"drop-{session.sid}")
        return Ack().to_payload()

    async def _drop(self, session: Session) -> None:
        await asyncio.sleep(0)  # after the ack
        await self.presences.leave(session, cause="drop")
        await self.presences.disconnect_later(session, DROP_GRACE_S)

    # ------------------------------------------------------------------ publishing

    async def _on_publish(self, session: Session, event: PublishRequest) -> Json:
        room, participant = self._member(session)
        if not participant.can_publish:
            raise RequestRefused(f"role '{participant.role}' may not publish", ErrorCode.NOT_PERMITTED)
        if self.publish_gate is not None:
            self.publish_gate(room, participant)
        if not (event.audio or event.video):
            raise RequestRefused("publish: neither audio nor video", ErrorCode.INVALID_PARAMETERS)
        if participant.stale_streams:  # the rejoined client's new stream replaces the old ones
            await self.presences.remove_stale(room, participant, cause="republished")
        stream = room.add_stream(
            participant,
            audio=event.audio,
            video=event.video,
            data=event.data,
            screen=bool(event.screen),
            name=event.name or participant.name,
        )
        self.rooms.save_stream_ids(room)
        log.info(
            "stream_published",
            room=room.room_id,
            client_id=participant.client_id,
            stream_id=stream.id,
            audio=stream.audio,
            video=stream.video,
        )
        return Ack(fields={"id": stream.id}).to_payload()

    async def _on_unpublish(self, session: Session, event: UnpublishRequest) -> Json:
        room, participant = self._member(session)
        stream = room.owned_stream(participant.client_id, event.stream_id)
        if stream is None:
            if room.take_retired(participant.client_id, event.stream_id):
                # the server removed it already (its peer connection closed first: the
                # official client's leave order); that was the unpublish
                log.info("stream_unpublish_acknowledged", room=room.room_id, stream_id=event.stream_id)
                return Ack().to_payload()
            raise RequestRefused(
                f"unpublish: stream {event.stream_id} is not yours", ErrorCode.STREAM_NOT_FOUND
            )
        await self.presences.remove_stream(room, stream, cause="unpublish")
        return Ack().to_payload()

    # ------------------------------------------------------------------ subscribing

    async def _on_subscribe(self, session: Session, event: SubscribeRequest) -> Json:
        room, participant = self._member(session)
        stream = room.streams.get(event.stream_id)
        if stream is None or not stream.announced:
            raise RequestRefused(f"subscribe: no stream {event.stream_id}", ErrorCode.STREAM_NOT_FOUND)
        if stream.client_id == participant.client_id:
            raise RequestRefused("subscribe: that stream is your own", ErrorCode.INVALID_PARAMETERS)
        participant.subscriptions.add(stream.id)
        return Ack().to_payload()

    async def _on_unsubscribe(self, session: Session, event: UnsubscribeRequest) -> Json:
        room, participant = self._member(session)
        if event.stream_id not in participant.subscriptions:
            raise RequestRefused(
                f"unsubscribe: not subscribed to {event.stream_id}", ErrorCode.STREAM_NOT_FOUND
            )
        participant.subscriptions.discard(event.stream_id)
        presence = self.presences.of(room, participant)
        self.tasks.cancel([presence.leg_tasks.pop(("subscribe", event.stream_id), None)])
        await self.media.close_subscribe(room.room_id, participant.client_id, event.stream_id)
        return Ack().to_payload()

    # ------------------------------------------------------------------ media legs

    async def _on_signaling_message(self, session: Session, event: SignalingMessage) -> None:
        room, participant = self._member(session)
        stream_id = event.stream_id
        own = room.owned_stream(participant.client_id, stream_id) is not None
        if not own and stream_id not in participant.subscriptions:
            raise RequestRefused(
                f"signaling_message: stream {stream_id} is neither yours nor subscribed",
                ErrorCode.STREAM_NOT_FOUND,
            )
        msg = event.msg
        role = "publish" if own else "subscribe"
        if isinstance(msg, Offer):
            presence = self.presences.of(room, participant)
            self.tasks.cancel([presence.leg_tasks.pop((role, stream_id), None)])
            if own:
                publish = await self.media.open_publish(room.room_id, stream_id, msg.sdp)
                coro = self._run_publish_leg(session.sid, room, publish)
            else:
                subscribe = await self.media.open_subscribe(
                    room.room_id, participant.client_id, stream_id, msg.sdp
                )
                coro = self._run_subscribe_leg(session.sid, room, subscribe)
            presence.leg_tasks[(role, stream_id)] = self.tasks.spawn(
                coro,
                name=f"{role}-leg-{room.room_id}-{stream_id}-{participant.client_id}",
                where="media_leg",
            )
        elif isinstance(msg, Candidate):
            leg: PublishLeg | SubscribeLeg | None = (
                self.media.publish_leg(room.room_id, stream_id)
                if own
                else self.media.subscribe_leg(room.room_id, participant.client_id, stream_id)
            )
            if leg is None:
                raise RequestRefused(
                    f"signaling_message: no offer yet for stream {stream_id}",
                    ErrorCode.STREAM_NOT_FOUND,
                )
            await leg.add_candidate(msg)
        # the end-of-candidates marker and other msg types need nothing; the ack is empty
        return None

    async def _run_publish_leg(self, sid: str, room: Room, leg: PublishLeg) -> None:
        """Answer, wait for the media, then ``ready`` to the publisher and onAddStream to others."""
        stream_id = leg.stream_id
        answer = await leg.answer()
        await self.outbox.emit(sid, MediaEngineConnecting(stream_id=stream_id, msg=answer))
        connected = await _connected_in_time(leg)
        stream = room.streams.get(stream_id)
        if stream is None or self.media.publish_leg(room.room_id, stream_id) is not leg:
            return
        if not connected:
            await self._publish_leg_ended(room, stream, leg)
            return
        first = not stream.announced
        stream.state = "ready"
        await self.outbox.emit(sid, MediaEngineConnecting(stream_id=stream_id, msg=Ready()))
        if first:
            await self.outbox.broadcast(room, StreamAdded(stream=stream.info()), exclude=stream.client_id)
        log.info("stream_ready", room=room.room_id, stream_id=stream_id)
        await leg.wait_ended()
        if not leg.closed_by_server and room.streams.get(stream_id) is stream:
            await self._publish_leg_ended(room, stream, leg)

    async def _publish_leg_ended(self, room: Room, stream: Stream, leg: PublishLeg) -> None:
        """The publisher's peer connection ended (or never came up) without the server closing it."""
        owner = room.participants.get(stream.client_id)
        if owner is None:
            return
        if owner.away or stream.id in owner.stale_streams:
            # tell nobody yet: the grace period, the re-publish or its expiry decides
            log.info(
                "publish_leg_ended",
                room=room.room_id,
                stream_id=stream.id,
                reason=leg.end_reason,
                owner_away=owner.away,
            )
            await self.media.close_publish(room.room_id, stream.id, leg)
            return
        if leg.end_reason == "peer_closed":
            await self.presences.remove_stream(room, stream, cause="peer_closed", retire=True)
            return
        log.warning(
            "media_leg_failed", room=room.room_id, stream_id=stream.id, role="publish", reason=leg.end_reason
        )
        await self.presences.remove_stream(room, stream, cause="media_failed", retire=True)

    async def _run_subscribe_leg(self, sid: str, room: Room, leg: SubscribeLeg) -> None:
        """Answer and ``ready`` keyed ``peerId`` (PROTOCOL.md section 5)."""
        stream_id = leg.stream_id
        answer = await leg.answer()
        await self.outbox.emit(sid, MediaEngineConnecting(stream_id=stream_id, msg=answer, subscriber=True))
        if not await _connected_in_time(leg):
            if leg.end_reason != "peer_closed" and not leg.closed_by_server:
                log.warning(
                    "media_leg_failed",
                    room=room.room_id,
                    stream_id=stream_id,
                    role="subscribe",
                    reason=leg.end_reason,
                )
            await self.media.close_subscribe(room.room_id, leg.client_id, stream_id, leg)
            return
        await self.outbox.emit(sid, MediaEngineConnecting(stream_id=stream_id, msg=Ready(), subscriber=True))
        log.info("subscription_ready", room=room.room_id, stream_id=stream_id, client_id=leg.client_id)
        await leg.wait_ended()
        await self.media.close_subscribe(room.room_id, leg.client_id, stream_id, leg)


async def _connected_in_time(leg: PublishLeg | SubscribeLeg) -> bool:
    """Whether the leg's media came up before the official client would give up."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(READY_TIMEOUT_S):
            return await leg.wait_connected()
    return False
