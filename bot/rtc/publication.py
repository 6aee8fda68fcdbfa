"""Our published stream: the signalling half of a publish leg (PROTOCOL.md section 4).

``publish`` -> ack id -> ``signaling_message`` offer -> answer on ``media_engine_connecting``
-> end-of-candidates marker -> ``ready``. The media half is :class:`~bot.rtc.legs.PublishLeg`;
server messages reach this object through :meth:`LocalPublication.deliver`, called by the
room's one dispatcher, so ``ready`` is seen in server order with every other event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

import structlog

from bot.proto import PublishRequest

from .errors import MediaError, RoomError
from .leg import _SignalledLeg
from .legs import IcePair, PublishLeg
from .signalling import Signalling

READY_TIMEOUT_S = 20.0
"""The official client gives a leg 30 s before tearing it down; we report earlier."""
MEDIA_SILENCE_S = 2.0
"""No receiver report from the media server for this long while we send: the path is down
(libwebrtc's ICE ``disconnected`` plus a short grace; aiortc has no such state)."""
WATCH_INTERVAL_S = 0.5
LOOP_LAG_S = 0.25
"""A watch tick this late means a starved event loop, not a silent network."""

_log = structlog.get_logger(__name__)

State = Literal["new", "publishing", "ready", "failed", "closed"]


class LocalPublication(_SignalledLeg[PublishLeg]):
    """Drives one publish leg through signalling. ``on_broken`` is called if the leg fails
    after it was ready (before that, :meth:`run` raises instead)."""

    _pending = "publishing"
    _ready_ignored_event = "ready_ignored"

    def __init__(
        self,
        *,
        signalling: Signalling,
        leg: PublishLeg,
        request: PublishRequest,
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
        self.request = request
        self.stream_id: int | None = None

    def _log_stream_id(self) -> int | None:
        return self.stream_id

    def _not_ready_what(self) -> str:
        return f"stream {self.stream_id}"

    # ------------------------------------------------------------------ the sequence

    async def run(self, within: float = READY_TIMEOUT_S) -> int:
        """Publish; returns the stream id once ``ready`` was delivered. Raises RoomError:
        the server's code if it refuses, 1160 if media does not come up within ``within`` seconds."""
        return await self._run_within(within, self._run)

    async def _run(self) -> int:
        offer = await self.leg.create_offer()
        self._check_offer(offer)
        ack = await self.signalling.request(self.request)
        if not ack.ok:
            raise RoomError(ack.result, f"publish refused: {ack.msg or 'no reason given'}")
        stream_id = ack.fields.get("id")
        if isinstance(stream_id, str) and stream_id.isdigit():
            stream_id = int(stream_id)
        if not isinstance(stream_id, int) or isinstance(stream_id, bool):
            raise MediaError(f"publish ack has no stream id: {ack.to_payload()!r}")
        self.stream_id = stream_id
        self._log.debug("publish_acked", stream_id=stream_id)
        await self._negotiate(stream_id, offer, "offer refused")
        return stream_id

    async def watch(self, silence_s: float = MEDIA_SILENCE_S) -> None:
        """While ready, check that the media server still hears us; when it has been silent for
        ``silence_s`` seconds, the leg is broken (``on_broken``). Returns when the leg is no
        longer ready."""
        loop = asyncio.get_running_loop()
        while self.state == "ready":
            slept_from = loop.time()
            await asyncio.sleep(WATCH_INTERVAL_S)
            late = loop.time() - slept_from - WATCH_INTERVAL_S
            silence = await self.leg.media_silence()
            if self.state != "ready" or silence is None or silence < silence_s:
                continue
            if late > LOOP_LAG_S:
                # the event loop itself was stalled (CPU starved): reports may be waiting
                # unread in the socket; no evidence against the network, look again
                self._log.debug("media_silence_ignored", loop_lag_s=round(late, 2))
                continue
            self.state = "failed"
            self._log.debug("media_silent", stream_id=self.stream_id, silent_s=round(silence, 2))
            if self._on_broken is not None:
                self._on_broken(f"the media server has not acknowledged our media for {silence:.1f} s")

    def selected_pair(self) -> IcePair | None:
        """The ICE candidate pair our media flows over (None before ICE completes)."""
        return self.leg.selected_pair()

    async def aclose(self) -> None:
        self.state = "closed"
        await self.leg.aclose()
