"""A remote stream we receive: the signalling half of a subscribe leg (PROTOCOL.md section 5).

``subscribe {streamId, audio, video, ...}`` -> ack -> ``signaling_message {streamId}`` with a
receive-only offer -> answer on ``media_engine_connecting`` keyed **peerId** -> end-of-candidates
marker -> ``ready``. The media half is :class:`~bot.rtc.peer.SubscribeLeg`. As for publishing,
server messages reach this object through :meth:`RemoteSubscription.deliver`, called by the
room's one dispatcher, so ``ready`` is seen in server order with every other event.

Leaving a stream is local: on ``onRemoveStream`` (or when we leave) the leg is closed and
nothing is sent (the official client sends no ``unsubscribe``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from bot.proto import (
    Answer,
    Candidate,
    EndOfCandidates,
    Offer,
    Ready,
    SdpMessage,
    SignalingMessage,
    StreamInfo,
    SubscribeRequest,
)

from .errors import MediaError, RoomError
from .peer import SubscribeLeg, has_any_candidate, has_relay_candidate
from .signalling import Signalling

READY_TIMEOUT_S = 20.0
"""As for publishing: the official client gives a leg 30 s; we report earlier."""
BROWSER = "enx-bot"
"""``browser`` of the subscribe request (the official web client sends its browser's name)."""

_log = structlog.get_logger(__name__)

State = Literal["new", "subscribing", "ready", "failed", "closed"]


@dataclass(frozen=True)
class _Wake:
    """``ready`` arrived (handled by the dispatcher): stop waiting."""


@dataclass(frozen=True)
class _Failed:
    reason: str


class RemoteSubscription:
    """Drives one subscribe leg through signalling. ``on_broken`` is called (once) if the leg
    fails or is closed by the media server after it was ready (before that, :meth:`run`
    raises instead)."""

    def __init__(
        self,
        *,
        signalling: Signalling,
        leg: SubscribeLeg,
        stream: StreamInfo,
        audio: bool,
        video: bool,
        force_turn: bool = False,
        on_broken: Callable[[str], None] | None = None,
        log: Any = None,
    ) -> None:
        self.signalling = signalling
        self.leg = leg
        self.stream = stream
        self.audio = audio
        self.video = video
        self.force_turn = force_turn
        self.state: State = "new"
        self.started_at = time.monotonic()
        """When :meth:`run` was called (``time.monotonic()``)."""
        self.ready_at: float | None = None
        self.task: asyncio.Task[None] | None = None
        """The task running :meth:`run` (set by the owner)."""
        self._on_broken = on_broken
        self._log = log if log is not None else _log
        self._inbox: asyncio.Queue[SdpMessage | _Wake | _Failed] = asyncio.Queue()

    @property
    def stream_id(self) -> int:
        return self.stream.id

    def payload(self) -> dict[str, Any]:
        """``on_subscribed_stream``: Flutter's ``{result, msg, streamId}`` plus who and what."""
        return {
            "result": "0",
            "msg": "success",
            "streamId": self.stream_id,
            "clientId": self.stream.client_id,
            "name": self.stream.name,
            "audio": self.audio,
            "video": self.video,
            "tapped": self.leg.tapped,
        }

    # ------------------------------------------------------------------ from the dispatcher

    def deliver(self, msg: SdpMessage) -> bool:
        """A ``media_engine_connecting {peerId}`` message for this stream. True when it is the
        ``ready`` that completes the subscription (the caller then reports it)."""
        if isinstance(msg, Ready):
            if self.state != "subscribing":
                self._log.debug("subscribe_ready_ignored", state=self.state, stream_id=self.stream_id)
                return False
            self.state = "ready"
            self.ready_at = time.monotonic()
            self._inbox.put_nowait(_Wake())
            return True
        if isinstance(msg, Answer | Candidate | EndOfCandidates):
            self._inbox.put_nowait(msg)
        else:
            self._log.debug("media_message_ignored", type=msg.type, stream_id=self.stream_id)
        return False

    def leg_failed(self, reason: str) -> None:
        """Wired to the leg's ``on_failed``."""
        if self.state == "subscribing":
            self._inbox.put_nowait(_Failed(reason))
        elif self.state == "ready":
            self.state = "failed"
            if self._on_broken is not None:
                self._on_broken(reason)

    # ------------------------------------------------------------------ the sequence

    async def run(self, within: float = READY_TIMEOUT_S) -> None:
        """Subscribe; returns once ``ready`` was delivered. Raises RoomError: the server's code
        if it refuses, 1160 if media does not come up within ``within`` seconds."""
        self.state = "subscribing"
        try:
            async with asyncio.timeout(within):
                await self._run()
        except TimeoutError:
            self._failed()
            raise MediaError(
                f"subscription to stream {self.stream_id} not ready within {within:g} s "
                f"(media connection {self.leg.connection_state})"
            ) from None
        except BaseException:
            self._failed()
            raise

    def _failed(self) -> None:
        if self.state != "closed":  # closing cancels run(): that is no failure
            self.state = "failed"

    async def _run(self) -> None:
        stream_id = self.stream_id
        request = SubscribeRequest(stream_id=stream_id, audio=self.audio, video=self.video, browser=BROWSER)
        # gather our candidates while the server takes the request
        offer, ack = await asyncio.gather(self.leg.create_offer(), self.signalling.request(request))
        if not ack.ok:
            raise RoomError(
                ack.result, f"subscribe to stream {stream_id} refused: {ack.msg or 'no reason given'}"
            )
        if self.force_turn and not has_relay_candidate(offer):
            raise MediaError(
                "forceTurn is set but no relay candidate was gathered: check the TURN server "
                "(urls, username, credential) in room-connected.iceServers"
            )
        if not has_any_candidate(offer):
            raise MediaError("no ICE candidate gathered: no usable network interface or STUN/TURN")
        ack = await self.signalling.request(SignalingMessage(stream_id=stream_id, msg=Offer(sdp=offer)))
        if not ack.ok:
            raise RoomError(ack.result, f"subscribe offer refused: {ack.msg or 'no reason given'}")

        early: list[Candidate] = []
        while True:
            item = await self._next()
            if isinstance(item, Answer):
                await self.leg.apply_answer(item.sdp)
                break
            if isinstance(item, Candidate):
                early.append(item)
        for candidate in early:
            await self.leg.add_remote_candidate(candidate)
        await self.signalling.request(SignalingMessage(stream_id=stream_id, msg=EndOfCandidates()))
        while self.state == "subscribing":
            item = await self._next()
            if isinstance(item, Candidate):
                await self.leg.add_remote_candidate(item)

    async def _next(self) -> SdpMessage | _Wake:
        item = await self._inbox.get()
        if isinstance(item, _Failed):
            raise MediaError(item.reason)
        return item

    async def close(self) -> None:
        """Close the leg (and its sink). Sends nothing: leaving a stream is local."""
        self.state = "closed"
        task = self.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.leg.close()
