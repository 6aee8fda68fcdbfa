"""Joining: the ``token`` handshake, matching a rejoin, and announcing the room to the joiner.

A token is verified against :class:`~.tokens.TokenBook`; a refusal is acked ``{result: code}``
and the socket closed once the ack had time to arrive. A rejoin (``isReconnecting`` naming a
participant with the same token) restores that participant on the new socket (see
:meth:`.presence.Presences.restore`); anything else is a fresh join with a new clientId. What
the joiner sees is fixed when the token is accepted; ``room-connected`` goes out after the ack,
then whatever happened meanwhile.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog

from bot.proto import (
    Ack,
    ErrorCode,
    IceServer,
    ParticipantPhase,
    PhaseMachine,
    RoomConnected,
    TokenError,
    TokenRequest,
    Trigger,
    UserConnected,
    redact,
)

from .errors import RequestRefused
from .outbox import Outbox
from .presence import Presences, Session
from .rooms import Participant, Room, RoomRegistry
from .stats import SignallingStats
from .tasks import Tasks
from .tokens import Claims, TokenBook
from .waiting_room import WaitingRoom, await_reason

log = structlog.get_logger(__name__)

Json = dict[str, Any]

STATUS_PATH = "/status"  # internetDetectionUrl: the official client probes it before a rejoin
REFUSAL_GRACE_S = 0.5  # time for a refusal ack to reach the client before we close


class Joining:
    """Answers ``token`` requests for one server."""

    def __init__(
        self,
        *,
        rooms: RoomRegistry,
        tokens: TokenBook,
        presences: Presences,
        outbox: Outbox,
        tasks: Tasks,
        stats: SignallingStats,
        ice_servers: Iterable[IceServer] = (),
        max_talkers: int = 6,
    ) -> None:
        self.rooms = rooms
        self.tokens = tokens
        self.presences = presences
        self.outbox = outbox
        self.tasks = tasks
        self.stats = stats
        self.ice_servers = tuple(ice_servers)
        self.max_talkers = max_talkers
        self.on_admitted: list[Callable[[Room, Participant, bool], None]] = []
        """``hook(room, participant, rejoin)`` as a participant is (re)admitted, before anyone
        hears of it (moderation)."""
        self.waiting_room: WaitingRoom | None = None
        """Holds joiners of knock / wait_for_moderator rooms (set by the signalling adapter)."""
        self.entered: list[Callable[[Room, Participant], Awaitable[None]]] = []
        """Run after each fresh join (the waiting room, the room clock)."""
        self.snapshot_extras: list[Callable[[Room, Participant], Json]] = []
        """Extra ``room-connected`` fields for one joiner (waiting list, lecture hands)."""

    def refuse(
        self,
        session: Session,
        exc: TokenError,
        token_id: object = None,
        attempt: PhaseMachine[ParticipantPhase] | None = None,
    ) -> Json:
        """Ack the refusal, then close the socket once the ack had time to arrive.

        ``attempt`` is the would-be participant's phase (a malformed token never had one)."""
        (attempt or PhaseMachine.participant()).step(Trigger.REFUSED)
        shown = redact(token_id) if isinstance(token_id, str) else None
        log.info("token_refused", sid=session.sid, code=exc.code, reason=str(exc), token=shown)
        self.stats.refused(exc.code)
        session.timers.append(
            self.tasks.spawn(
                self.presences.disconnect_later(session, REFUSAL_GRACE_S), name=f"refuse-{session.sid}"
            )
        )
        return Ack.error(exc.code, str(exc)).to_payload()

    async def on_token(self, session: Session, request: TokenRequest) -> Json:
        waiting = self.waiting_room is not None and self.waiting_room.is_waiting(session.sid)
        if session.client_id is not None or waiting:
            raise RequestRefused("already joined on this socket", ErrorCode.ALREADY_JOINED)
        attempt = PhaseMachine.participant()
        token_id = request.envelope.get("tokenId")
        try:
            claims = self.tokens.verify(request)
            room = self.rooms.find(claims.room_id)
            if room is None:
                raise TokenError("the token's room does not exist", ErrorCode.ROOM_NOT_FOUND)
        except TokenError as exc:
            return self.refuse(session, exc, token_id, attempt)

        if request.is_reconnecting and request.old_client_id:
            old = room.participants.get(request.old_client_id)
            if old is not None and old.jti == claims.jti:
                return await self._rejoin(session, room, old, claims, request)

        client_id = uuid.uuid4().hex
        participant = Participant(
            client_id=client_id,
            sid=session.sid,
            name=claims.name,
            role=claims.role,
            user_ref=claims.user_ref,
            data=dict(claims.data),
            jti=claims.jti,
            phase=attempt,
        )
        self.tokens.consume(claims, client_id)
        reason = None if self.waiting_room is None else await_reason(room, participant)
        if reason is not None and self.waiting_room is not None:
            return await self.waiting_room.hold(session, room, participant, reason)
        await self.enter(session, room, participant)
        return Ack(fields={"clientId": client_id, "connectedIP": session.remote_ip}).to_payload()

    async def enter(self, session: Session, room: Room, participant: Participant) -> None:
        """A fresh participant joins: the others hear ``user-connected``, it gets its
        ``room-connected`` (after the token ack), then the ``entered`` hooks run."""
        self.presences.admit(session, room, participant)
        for admitted in self.on_admitted:
            admitted(room, participant, False)
        self.stats.joins += 1
        # What the joiner sees is fixed now; anything later reaches it through ``pending``.
        snapshot = self._snapshot(room, participant, session)
        log.info(
            "participant_joined",
            room=room.room_id,
            client_id=participant.client_id,
            name=participant.name,
            role=participant.role,
            rejoin=False,
        )
        await self.outbox.broadcast(
            room, UserConnected(user=participant.user_info()), exclude=participant.client_id
        )
        self.tasks.spawn(
            self._announce(participant, snapshot), name=f"room-connected-{participant.client_id}"
        )
        for hook in self.entered:
            await hook(room, participant)

    def _snapshot(self, room: Room, participant: Participant, session: Session) -> RoomConnected:
        stale: set[int] = set().union(*(p.stale_streams for p in room.participants.values()))
        return RoomConnected(
            room_id=room.room_id,
            client_id=participant.client_id,
            user=participant.user_info(),
            user_list=[p.user_info() for p in room.participants.values()],
            streams=[
                s.info()
                for s in room.ready_streams(exclude_client=participant.client_id)
                if s.id not in stale
            ],
            ice_servers=list(self.ice_servers),
            room=room.to_meta(),
            initial_num_ats=room.initial_num_ats(self.max_talkers),
            max_talkers=self.max_talkers,
            internet_detection_url=session.base_url + STATUS_PATH if session.base_url else None,
            extra={k: v for extra in self.snapshot_extras for k, v in extra(room, participant).items()},
        )

    async def _announce(self, participant: Participant, snapshot: RoomConnected) -> None:
        """room-connected after the token ack, then whatever happened meanwhile."""
        # python-socketio queues the ack once the handler has returned; this task only runs
        # after that, and one more turn of the loop leaves a margin.
        await asyncio.sleep(0)
        sid = participant.sid
        await self.outbox.emit(sid, snapshot)
        while participant.pending and participant.sid == sid:
            await self.outbox.emit(sid, participant.pending.pop(0))
        if participant.sid == sid:
            participant.announced = True

    async def _rejoin(
        self, session: Session, room: Room, participant: Participant, claims: Claims, request: TokenRequest
    ) -> Json:
        """Restore a participant on a new socket: same clientId, nothing for the others to see
        yet; its old streams become stale (removed when it publishes again)."""
        away_s = await self.presences.restore(session, room, participant)
        for hook in self.on_admitted:
            hook(room, participant, True)
        self.tokens.consume(claims, participant.client_id)
        self.stats.joins += 1
        snapshot = self._snapshot(room, participant, session)
        log.info(
            "participant_rejoined",
            room=room.room_id,
            client_id=participant.client_id,
            name=participant.name,
            attempt=request.reconnect_attempt,
            away_s=None if away_s is None else round(away_s, 3),
            stale_streams=sorted(participant.stale_streams),
        )
        self.tasks.spawn(
            self._announce(participant, snapshot), name=f"room-connected-{participant.client_id}"
        )
        return Ack(fields={"clientId": participant.client_id, "connectedIP": session.remote_ip}).to_payload()
