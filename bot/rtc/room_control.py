"""The waiting room, the room's clock and lecture mode's floor, inside the room.

:class:`RoomControl` handles the server's events once we are in (a moderator's
``user-awaited``, ``conference-remaining-duration``, ``room-disconnected`` ending the session,
the ``floor-*`` events) and sends the requests behind the Flutter methods
(``approveAwaitedUser``, ``denyAwaitedUser``, ``requestFloor``, ``grantFloor``, ``denyFloor``,
``releaseFloor``). :class:`RoomControlApi` is the part of ``EnxRtc`` that exposes them:
callback slots and thin methods. The joiner's side of the waiting room is ``waiting_room.py``.

Lecture mode (``room.settings.mode == "lecture"``): a participant does not publish on joining;
``floor-granted`` starts publishing (what ``local_info`` asks for), ``floor-released`` stops it
(the server has removed the stream).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bot.proto import (
    IN_ROOM,
    MAX_CLIENT_ID,
    ApproveAwaitedUser,
    ClientEvent,
    ConferenceRemainingDuration,
    DenyAwaitedUser,
    DenyFloor,
    ErrorCode,
    FloorDenied,
    FloorGranted,
    FloorReleased,
    FloorRequested,
    GrantFloor,
    ReleaseFloor,
    RequestFloor,
    RoomAllowed,
    RoomAwaited,
    RoomDisconnected,
    UserAwaited,
)

from .callbacks import Callback, CallbackName, Json
from .errors import RoomError
from .publisher import LocalPublisher
from .session import Context

Handler = Callable[[Any], Awaitable[None]]
Leave = Callable[[Json], Awaitable[None]]


class RoomControl:
    """In-room events and requests of the waiting room, the clock and the floor."""

    def __init__(self, ctx: Context, publisher: LocalPublisher, leave: Leave) -> None:
        self._ctx = ctx
        self._publisher = publisher
        self._leave = leave

    def handlers(self) -> dict[type, Handler]:
        return {
            UserAwaited: self._user_awaited,
            RoomAwaited: self._late,
            RoomAllowed: self._late,
            ConferenceRemainingDuration: self._remaining,
            RoomDisconnected: self._ended,
            FloorRequested: self._floor_requested,
            FloorGranted: self._granted,
            FloorDenied: self._denied,
            FloorReleased: self._released,
        }

    # ------------------------------------------------------------------ requests

    async def request(self, event: ClientEvent, callback: CallbackName) -> Json:
        """Send a request; its ack (``{result, msg, ...}``) goes to ``callback`` and is returned.
        A refusal is in ``result``; RoomError 1171 when not in a room."""
        ctx = self._ctx
        session = ctx.session
        if ctx.phase.phase not in IN_ROOM or session is None or ctx.room is None:
            raise RoomError(ErrorCode.ROOM_NOT_CONNECTED, "not in a room")
        ack = await session.signalling.request(event)
        payload: Json = {**ack.fields, "result": ack.result, "msg": ack.msg or ack.fields.get("msg", "")}
        if not ack.ok:
            ctx.log.warning("request_refused", request=type(event).__name__, code=ack.result, msg=ack.msg)
        await ctx.fire(callback, payload)
        return payload

    @staticmethod
    def client_id(value: object) -> str:
        if not isinstance(value, str) or not 0 < len(value) <= MAX_CLIENT_ID:
            raise RoomError(ErrorCode.INVALID_PARAMETERS, f"not a clientId: {str(value)[:80]!r}")
        return value

    # ------------------------------------------------------------------ events

    async def _user_awaited(self, item: UserAwaited) -> None:
        user = item.user
        self._ctx.log.debug("user_awaited", user=user.name, user_id=user.client_id)
        await self._ctx.fire("on_user_awaited", user.to_payload())

    async def _late(self, item: RoomAwaited | RoomAllowed) -> None:
        self._ctx.log.debug("waiting_room_event_ignored", event=type(item).__name__)

    async def _remaining(self, item: ConferenceRemainingDuration) -> None:
        self._ctx.log.debug("conference_remaining_duration", time_left=item.time_left)
        await self._ctx.fire("on_conference_remaining_duration", item.to_payload())

    async def _ended(self, item: RoomDisconnected) -> None:
        """The server ends our session (the room expired): leave without reconnecting."""
        self._ctx.log.debug("room_ended_by_server", cause=item.cause, msg=item.msg)
        await self._leave(item.as_callback())

    async def _floor_requested(self, item: FloorRequested) -> None:
        await self._ctx.fire("on_floor_request_received", item.to_payload())

    async def _granted(self, item: FloorGranted) -> None:
        ctx, publisher = self._ctx, self._publisher
        publisher.floor_granted = True
        await ctx.fire("on_granted_floor_request", item.to_payload())
        session, room = ctx.session, ctx.room
        if not ctx.connected or session is None or room is None or publisher.publication is not None:
            return
        if publisher.may_publish(room):
            publisher.start(session, room)

    async def _denied(self, item: FloorDenied) -> None:
        await self._ctx.fire("on_denied_floor_request", item.to_payload())

    async def _released(self, item: FloorReleased) -> None:
        """The floor is taken back: the server removed our stream; close our leg (no unpublish)."""
        ctx, publisher = self._ctx, self._publisher
        publisher.floor_granted = False
        stream_id = publisher.stream_id
        publication = await publisher.detach()
        if publication is not None:
            await publication.aclose()
        publisher.stream_id = None
        await ctx.fire("on_released_floor_request", item.to_payload())
        if stream_id is not None:
            await ctx.fire(
                "on_unpublished_stream", {"result": "0", "msg": "floor released", "streamId": stream_id}
            )


class RoomControlApi:
    """``EnxRtc``'s waiting-room, duration and floor callbacks and methods (Flutter names)."""

    _control: RoomControl

    on_room_awaited: Callback | None = None
    """``{event_type: "knock"|"wait_for_moderator"}``: we wait to be let in (from inside join_room)."""
    on_user_awaited: Callback | None = None
    """Moderators: someone waits to be let in (the user, as in ``on_user_connected``)."""
    on_ack_for_approve_awaited_user: Callback | None = None
    on_ack_for_deny_awaited_user: Callback | None = None
    on_conference_remaining_duration: Callback | None = None
    """``{timeLeft}``: minutes left before the room ends for everyone."""
    on_floor_requested: Callback | None = None
    """The ack of our :meth:`request_floor`."""
    on_floor_request_received: Callback | None = None
    """Moderators: ``{clientId, name}`` asks for the floor."""
    on_process_floor_requested: Callback | None = None
    """Moderators: the ack of grant/deny/release (``{result, msg, clientId, action}``)."""
    on_granted_floor_request: Callback | None = None
    on_denied_floor_request: Callback | None = None
    on_released_floor_request: Callback | None = None

    def _init_room_control(self, control: RoomControl) -> None:
        self._control = control

    async def approve_awaited_user(self, client_id: str) -> Json:
        """Moderators: let a waiting participant in (Flutter ``approveAwaitedUser``)."""
        event = ApproveAwaitedUser(client_id=RoomControl.client_id(client_id))
        return await self._control.request(event, "on_ack_for_approve_awaited_user")

    async def deny_awaited_user(self, client_id: str) -> Json:
        """Moderators: turn a waiting participant away (Flutter ``denyAwaitedUser``)."""
        event = DenyAwaitedUser(client_id=RoomControl.client_id(client_id))
        return await self._control.request(event, "on_ack_for_deny_awaited_user")

    async def request_floor(self) -> Json:
        """Lecture mode, participants: ask for the floor (Flutter ``requestFloor``)."""
        return await self._control.request(RequestFloor(), "on_floor_requested")

    async def grant_floor(self, client_id: str) -> Json:
        """Lecture mode, moderators: let that participant publish (Flutter ``grantFloor``)."""
        event = GrantFloor(client_id=RoomControl.client_id(client_id))
        return await self._control.request(event, "on_process_floor_requested")

    async def deny_floor(self, client_id: str) -> Json:
        """Lecture mode, moderators: turn a floor request down (Flutter ``denyFloor``)."""
        event = DenyFloor(client_id=RoomControl.client_id(client_id))
        return await self._control.request(event, "on_process_floor_requested")

    async def release_floor(self, client_id: str) -> Json:
        """Lecture mode, moderators: take the floor back; its stream ends (Flutter ``releaseFloor``)."""
        event = ReleaseFloor(client_id=RoomControl.client_id(client_id))
        return await self._control.request(event, "on_process_floor_requested")
