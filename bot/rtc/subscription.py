"""A remote stream we receive: the signalling half of a subscribe leg (PROTOCOL.md section 5).

``subscribe {streamId, audio, video, ...}`` -> ack -> ``signaling_message {streamId}`` with a
receive-only offer -> answer on ``media_engine_connecting`` keyed **peerId** -> end-of-candidates
marker -> ``ready``. The media half is :class:`~bot.rtc.legs.SubscribeLeg`. As for publishing,
server messages reach this object through :meth:`RemoteSubscription.deliver`, called by the
room's one dispatcher, so ``ready`` is seen in server order with every other event.

Leaving a stream is local: on ``onRemoveStream`` (or when we leave) the leg is closed and
nothing is sent (the official client sends no ``unsubscribe``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Literal

import structlog

from bot.proto import StreamInfo, SubscribeRequest

from .errors import RoomError
from .leg import _SignalledLeg
from .legs import SubscribeLeg
from .signalling import Signalling

READY_TIMEOUT_S = 20.0
"""As for publishing: the official client gives a leg 30 s; we report earlier."""
BROWSER = "enx-bot"
"""``browser`` of the subscribe request (the official web client sends its browser's name)."""

_log = structlog.get_logger(__name__)

State = Literal["new", "subscribing", "ready", "failed", "closed"]


class RemoteSubscription(_SignalledLeg[SubscribeLeg]):
    """Drives one subscribe leg through signalling. ``on_broken`` is called (once) if the leg
    fails or is closed by the media server after it was ready (before that, :meth:`run`
    raises instead)."""

    _pending = "subscribing"
    _ready_ignored_event = "subscribe_ready_ignored"

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
        super().__init__(
            signalling=signalling,
            leg=leg,
            force_turn=force_turn,
            on_broken=on_broken,
            log=log if log is not None else _log,
        )
        self.stream = stream
        self.audio = audio
        self.video = video
        self.started_at = time.monotonic()
        """When :meth:`run` was called (``time.monotonic()``)."""
        self.ready_at: float | None = None
        self.task: asyncio.Task[None] | None = None
        """The task running :meth:`run` (set by the owner)."""

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

    def _log_stream_id(self) -> int:
        return self.stream_id

    def _not_ready_what(self) -> str:
        return f"subscription to stream {self.stream_id}"

    def _on_ready(self) -> None:
        self.ready_at = time.monotonic()

    def _run_failed(self) -> None:
        if self.state != "closed":  # closing cancels run(): that is no failure
            self.state = "failed"

    # ------------------------------------------------------------------ the sequence

    async def run(self, within: float = READY_TIMEOUT_S) -> None:
        """Subscribe; returns once ``ready`` was delivered. Raises RoomError: the server's code
        if it refuses, 1160 if media does not come up within ``within`` seconds."""
        await self._run_within(within, self._run)

    async def _run(self) -> None:
        stream_id = self.stream_id
        request = SubscribeRequest(stream_id=stream_id, audio=self.audio, video=self.video, browser=BROWSER)
        # gather our candidates while the server takes the request
        offer, ack = await asyncio.gather(self.leg.create_offer(), self.signalling.request(request))
        if not ack.ok:
            raise RoomError(
                ack.result, f"subscribe to stream {stream_id} refused: {ack.msg or 'no reason given'}"
            )
        self._check_offer(offer)
        await self._negotiate(stream_id, offer, "subscribe offer refused")

    async def aclose(self) -> None:
        """Close the leg (and its sink). Sends nothing: leaving a stream is local."""
        self.state = "closed"
        task = self.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.leg.aclose()
