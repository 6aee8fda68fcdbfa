"""What publish and subscribe share on the signalling side: the leg state machine.

Server messages arrive through :meth:`_SignalledLeg.deliver` (``ready``, answer, candidates,
end-of-candidates) and leg failures through :meth:`_SignalledLeg.leg_failed`; the sequence
(offer -> answer -> early candidates -> end-of-candidates -> wait for ``ready``) runs under a
timeout. :class:`~bot.rtc.publication.LocalPublication` and
:class:`~bot.rtc.subscription.RemoteSubscription` differ in the pending state's name, their log
event names, what ``ready`` records and how the sequence starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

from bot.proto import Answer, Candidate, EndOfCandidates, Offer, Ready, SdpMessage, SignalingMessage

from .errors import MediaError, RoomError
from .legs import has_any_candidate, has_relay_candidate
from .signalling import Signalling

LegState = Literal["new", "publishing", "subscribing", "ready", "failed", "closed"]

T = TypeVar("T")


class _MediaLeg(Protocol):
    """The media half as the signalling half uses it (PublishLeg, SubscribeLeg)."""

    @property
    def connection_state(self) -> str: ...

    async def create_offer(self) -> str: ...

    async def apply_answer(self, sdp: str) -> None: ...

    async def add_remote_candidate(self, candidate: Candidate | None) -> None: ...


LegT = TypeVar("LegT", bound=_MediaLeg)


@dataclass(frozen=True)
class _Wake:
    """``ready`` arrived (handled by the dispatcher): stop waiting."""


@dataclass(frozen=True)
class _Failed:
    reason: str


class _SignalledLeg(Generic[LegT]):
    """Drives one leg through signalling. ``on_broken`` is called if the leg fails after it
    was ready (before that, the sequence raises instead)."""

    _pending: ClassVar[LegState]
    """The state while the sequence runs ("publishing" / "subscribing")."""
    _ready_ignored_event: ClassVar[str]
    """Log event for a ``ready`` that arrives outside the pending state."""

    def __init__(
        self,
        *,
        signalling: Signalling,
        leg: LegT,
        force_turn: bool,
        on_broken: Callable[[str], None] | None,
        log: Any,
    ) -> None:
        self.signalling = signalling
        self.leg = leg
        self.force_turn = force_turn
        self.state: LegState = "new"
        self._on_broken = on_broken
        self._log = log
        self._inbox: asyncio.Queue[SdpMessage | _Wake | _Failed] = asyncio.Queue()

    # ------------------------------------------------------------------ what differs

    def _log_stream_id(self) -> int | None:
        """The stream id for log lines (None before it is known)."""
        raise NotImplementedError

    def _not_ready_what(self) -> str:
        """What was not ready in time, for the timeout's error message."""
        raise NotImplementedError

    def _on_ready(self) -> None:
        """``ready`` completed the sequence (state already "ready"): record what is needed."""

    def _run_failed(self) -> None:
        """The sequence raised (timeout, refusal, cancellation)."""
        self.state = "failed"

    # ------------------------------------------------------------------ from the dispatcher

    def deliver(self, msg: SdpMessage) -> bool:
        """A ``media_engine_connecting`` message for our stream. True when it is the ``ready``
        that completes the sequence (the caller then reports it)."""
        if isinstance(msg, Ready):
            if self.state != self._pending:
                self._log.debug(self._ready_ignored_event, state=self.state, stream_id=self._log_stream_id())
                return False
            self.state = "ready"
            self._on_ready()
            self._inbox.put_nowait(_Wake())
            return True
        if isinstance(msg, Answer | Candidate | EndOfCandidates):
            self._inbox.put_nowait(msg)
        else:
            self._log.debug("media_message_ignored", type=msg.type, stream_id=self._log_stream_id())
        return False

    def leg_failed(self, reason: str) -> None:
        """Wired to the leg's ``on_failed``."""
        if self.state == self._pending:
            self._inbox.put_nowait(_Failed(reason))
        elif self.state == "ready":
            self.state = "failed"
            if self._on_broken is not None:
                self._on_broken(reason)

    # ------------------------------------------------------------------ the sequence

    async def _run_within(self, within: float, sequence: Callable[[], Awaitable[T]]) -> T:
        """Enter the pending state and run ``sequence`` with ``within`` seconds to finish.
        Raises MediaError (1160) on timeout."""
        self.state = self._pending
        try:
            async with asyncio.timeout(within):
                return await sequence()
        except TimeoutError:
            self._run_failed()
            raise MediaError(
                f"{self._not_ready_what()} not ready within {within:g} s "
                f"(media connection {self.leg.connection_state})"
            ) from None
        except BaseException:
            self._run_failed()
            raise

    def _check_offer(self, offer: str) -> None:
        """Raise MediaError when the offer cannot work (no candidate, or no relay under forceTurn)."""
        if self.force_turn and not has_relay_candidate(offer):
            raise MediaError(
                "forceTurn is set but no relay candidate was gathered: check the TURN server "
                "(urls, username, credential) in room-connected.iceServers"
            )
        if not has_any_candidate(offer):
            raise MediaError("no ICE candidate gathered: no usable network interface or STUN/TURN")

    async def _negotiate(self, stream_id: int, offer: str, refused: str) -> None:
        """Send the offer, apply the answer (then the candidates that came before it), send
        end-of-candidates and take candidates until ``ready``. ``refused`` prefixes the
        RoomError if the server refuses the offer."""
        ack = await self.signalling.request(SignalingMessage(stream_id=stream_id, msg=Offer(sdp=offer)))
        if not ack.ok:
            raise RoomError(ack.result, f"{refused}: {ack.msg or 'no reason given'}")

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
        while self.state == self._pending:
            item = await self._next()
            if isinstance(item, Candidate):
                await self.leg.add_remote_candidate(item)

    async def _next(self) -> SdpMessage | _Wake:
        item = await self._inbox.get()
        if isinstance(item, _Failed):
            raise MediaError(item.reason)
        return item
