"""Our published stream: the signalling half of a publish leg (PROTOCOL.md section 4).

``publish`` -> ack id -> ``signaling_message`` offer -> answer on ``media_engine_connecting``
-> end-of-candidates marker -> ``ready``. The media half is :class:`~bot.rtc.peer.PublishLeg`;
server messages reach this object through :meth:`LocalPublication.deliver`, called by the
room's one dispatcher, so ``ready`` is seen in server order with every other event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from bot.proto import (
    Answer,
    Candidate,
    EndOfCandidates,
    Offer,
    PublishRequest,
    Ready,
    SdpMessage,
    SignalingMessage,
)

from .errors import MediaError, RoomError
from .peer import IcePair, PublishLeg, has_any_candidate, has_relay_candidate
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


@dataclass(frozen=True)
class _Wake:
    """``ready`` arrived (handled by the dispatcher): stop waiting."""


@dataclass(frozen=True)
class _Failed:
    reason: str


class LocalPublication:
    """Drives one publish leg through signalling. ``on_broken`` is called if the leg fails
    after it was ready (before that, :meth:`run` raises instead)."""

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
        self.signalling = signalling
        self.leg = leg
        self.request = request
        self.force_turn = force_turn
        self.stream_id: int | None = None
        self.state: State = "new"
        self._on_broken = on_broken
        self._log = log if log is not None else _log
        self._inbox: asyncio.Queue[SdpMessage | _Wake | _Failed] = asyncio.Queue()

    # ------------------------------------------------------------------ from the dispatcher

    def deliver(self, msg: SdpMessage) -> bool:
        """A ``media_engine_connecting`` message for our stream. True when it is the ``ready``
        that completes publishing (the caller then reports the stream as published)."""
        if isinstance(msg, Ready):
            if self.state != "publishing":
                self._log.debug("ready_ignored", state=self.state, stream_id=self.stream_id)
                return False
            self.state = "ready"
            self._inbox.put_nowait(_Wake())
            return True
        if isinstance(msg, Answer | Candidate | EndOfCandidates):
            self._inbox.put_nowait(msg)
        else:
            self._log.debug("media_message_ignored", type=msg.type, stream_id=self.stream_id)
        return False

    def leg_failed(self, reason: str) -> None:
        """Wired to the leg's ``on_failed``."""
        if self.state == "publishing":
            self._inbox.put_nowait(_Failed(reason))
        elif self.state == "ready":
            self.state = "failed"
            if self._on_broken is not None:
                self._on_broken(reason)

    # ------------------------------------------------------------------ the sequence

    async def run(self, within: float = READY_TIMEOUT_S) -> int:
        """Publish; returns the stream id once ``ready`` was delivered. Raises RoomError:
        the server's code if it refuses, 1160 if media does not come up within ``within`` seconds."""
        self.state = "publishing"
        try:
            async with asyncio.timeout(within):
                return await self._run()
        except TimeoutError:
            self.state = "failed"
            raise MediaError(
                f"stream {self.stream_id} not ready within {within:g} s "
                f"(media connection {self.leg.connection_state})"
            ) from None
        except BaseException:
            self.state = "failed"
            raise

    async def _run(self) -> int:
        offer = await self.leg.create_offer()
        if self.force_turn and not has_relay_candidate(offer):
            raise MediaError(
                "forceTurn is set but no relay candidate was gathered: check the TURN server "
                "(urls, username, credential) in room-connected.iceServers"
            )
        if not has_any_candidate(offer):
            raise MediaError("no ICE candidate gathered: no usable network interface or STUN/TURN")
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

        ack = await self.signalling.request(SignalingMessage(stream_id=stream_id, msg=Offer(sdp=offer)))
        if not ack.ok:
            raise RoomError(ack.result, f"offer refused: {ack.msg or 'no reason given'}")

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
        while self.state == "publishing":
            item = await self._next()
            if isinstance(item, Candidate):
                await self.leg.add_remote_candidate(item)
        return stream_id

    async def _next(self) -> SdpMessage | _Wake:
        item = await self._inbox.get()
        if isinstance(item, _Failed):
            raise MediaError(item.reason)
        return item

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

    async def close(self) -> None:
        self.state = "closed"
        await self.leg.close()
