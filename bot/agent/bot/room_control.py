"""A bot in a waiting room, a room with a duration, or a lecture: the log lines, the outcomes,
and what it does (a participant asks for the floor; a moderator bot answers as ``moderate``
says).

Outcomes: a join the moderator turned away is ``denied`` (4130), one that waited longer than
``room_info.wait_timeout_s`` is ``wait_timeout`` (4131): neither is a join failure (no retry,
exit 5). A session the room ended when its ``duration`` ran out is ``room_ended`` (2003, exit 0).
Waiting is not joining: ``join_ms`` counts from the end of the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot.proto import ErrorCode
from bot.rtc import EnxRtc

from ..config import BotConfig

NOT_ADMITTED = {int(ErrorCode.AWAIT_DENIED): "denied", int(ErrorCode.AWAIT_TIMED_OUT): "wait_timeout"}
ENDED_BY_ROOM = {  # room-disconnected causes that are the room's doing, not a lost session
    int(ErrorCode.CONFERENCE_EXPIRED): "room_ended",
    int(ErrorCode.DISCONNECTED_BY_MODERATOR): "dropped",
}


def join_outcome(code: int) -> str:
    """The outcome (``Outcome`` value) of a join that raised RoomError ``code``."""
    return NOT_ADMITTED.get(int(code), "join_failed")


def session_outcome(cause: object) -> str:
    """The outcome (``Outcome`` value) of a session that ended without being asked to."""
    return ENDED_BY_ROOM.get(cause, "lost") if isinstance(cause, int) else "lost"


async def join_unless_stopped(rtc: EnxRtc, stop: asyncio.Event, join: Awaitable[None]) -> bool:
    """Run ``join`` (``rtc.join_room``) unless ``stop`` comes first: a join may wait in a
    waiting room for minutes, and a stopped agent must leave within seconds. False when
    stopped (the join is abandoned: ``rtc`` disconnected); a failed join raises as usual."""
    joining = asyncio.ensure_future(join)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({joining, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if joining.done():
        joining.result()
        return True
    await rtc.disconnect()  # wakes the waiting join
    with contextlib.suppress(Exception):
        await joining
    return False


class RoomControl:
    """Wires the waiting-room, duration and floor callbacks of one bot's EnxRtc."""

    def __init__(self, cfg: BotConfig, log: Any) -> None:
        self.cfg = cfg
        self._log = log
        self.log: Callable[[], Any] = lambda: (
            self._log
        )  # replaced by the bot (its log gains room and client_id)
        self._awaited_at: float | None = None
        self.waited_ms: float = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._names: dict[str, str] = {}  # clientId -> name, of those who knocked or asked

    def wire(self, rtc: EnxRtc) -> None:
        self.rtc = rtc
        rtc.on_room_awaited = self._on_room_awaited
        rtc.on_user_awaited = self._on_user_awaited
        rtc.on_ack_for_approve_awaited_user = lambda p: self._ack("ack_for_approve_awaited_user", p)
        rtc.on_ack_for_deny_awaited_user = lambda p: self._ack("ack_for_deny_awaited_user", p)
        rtc.on_conference_remaining_duration = lambda p: self.log().warning(
            "conference_remaining_duration", time_left=p.get("timeLeft")
        )
        rtc.on_floor_requested = lambda p: self._ack("floor_requested", p)
        rtc.on_floor_request_received = self._on_floor_request_received
        rtc.on_process_floor_requested = lambda p: self._ack("process_floor_requested", p)
        rtc.on_granted_floor_request = lambda p: self._floor("granted_floor_request", p)
        rtc.on_denied_floor_request = lambda p: self._floor("denied_floor_request", p)
        rtc.on_released_floor_request = lambda p: self._floor("released_floor_request", p)

    def room_connected(self, payload: dict[str, Any]) -> None:
        """Joined: the wait is over; a lecture participant that publishes asks for the floor."""
        if self._awaited_at is not None:
            self.waited_ms = round((time.perf_counter() - self._awaited_at) * 1000, 1)
        me = payload.get("me") or {}
        settings = (payload.get("room") or {}).get("settings") or {}
        local = self.cfg.join_local_info()
        if (
            settings.get("mode") == "lecture"
            and me.get("role") == "participant"
            and self.cfg.request_floor
            and (local.audio or local.video)
        ):
            self._spawn(self.rtc.request_floor(), "request-floor")

    def _spawn(self, request: Any, name: str) -> None:
        async def run() -> None:
            try:
                await request
            except Exception as exc:  # a request that could not be sent: logged, the bot stays
                self.log().warning("room_control_request_failed", request=name, error=str(exc))

        task = asyncio.get_running_loop().create_task(run(), name=f"{self.cfg.name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_room_awaited(self, payload: dict[str, Any]) -> None:
        self._awaited_at = time.perf_counter()
        self.log().info(
            "room_awaited", reason=payload.get("event_type"), wait_timeout_s=self.cfg.room_info.wait_timeout_s
        )

    def _on_user_awaited(self, user: dict[str, Any]) -> None:
        decision = self.cfg.moderate.awaited
        approve, deny = self.rtc.approve_awaited_user, self.rtc.deny_awaited_user
        self._moderate("user_awaited", user, decision, "approve", approve, deny, "awaited")

    def _on_floor_request_received(self, payload: dict[str, Any]) -> None:
        grant, deny = self.rtc.grant_floor, self.rtc.deny_floor
        self._moderate(
            "floor_request_received", payload, self.cfg.moderate.floor, "grant", grant, deny, "floor"
        )

    def _moderate(
        self,
        event: str,
        payload: dict[str, Any],
        decision: str,
        yes: str,
        on_yes: Callable[[str], Awaitable[Any]],
        on_no: Callable[[str], Awaitable[Any]],
        what: str,
    ) -> None:
        """A participant asks a moderator bot (to be let in, for the floor): log it, remember
        its name for the acknowledgement's line, and answer as ``moderate`` says."""
        self.log().info(event, user=payload.get("name"), user_id=payload.get("clientId"))
        client_id = payload.get("clientId")
        if not isinstance(client_id, str):
            return
        self._names[client_id] = str(payload.get("name", ""))
        if decision != "none":
            self._spawn((on_yes if decision == yes else on_no)(client_id), f"{decision}-{what}")

    def _ack(self, event: str, payload: dict[str, Any]) -> None:
        ok = payload.get("result") == 0
        client_id = payload.get("clientId")
        about = (
            {"user": self._names.get(client_id), "user_id": client_id} if isinstance(client_id, str) else {}
        )
        (self.log().info if ok else self.log().warning)(
            event, result=payload.get("result"), msg=payload.get("msg"), **about
        )

    def _floor(self, event: str, payload: dict[str, Any]) -> None:
        self.log().info(event, moderator_id=payload.get("moderatorId"))

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
