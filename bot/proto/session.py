"""Session phases of both ends, as one transition table per role (sans-I/O, like h11's ``_state``).

The client (``EnxRtc``) and the server's view of a participant each own a :class:`PhaseMachine`;
every phase change goes through :meth:`PhaseMachine.step`, so an impossible order of events
(a rejoin before a loss, a second join) is an error that names the trigger, the role and the
phase instead of a silently wrong state.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Generic, TypeVar

from .errors import ErrorCode, LocalProtocolError


class Phase(StrEnum):
    """The client's session phase. A ``StrEnum`` so ``rtc.phase == "connected"`` still holds."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DISCONNECTING = "disconnecting"
    DISCONNECTED = "disconnected"


class ParticipantPhase(StrEnum):
    """The server's view of one participant (PROTOCOL.md: rejoin within the grace period)."""

    JOINING = "joining"  # socket up, token handshake not answered yet
    JOINED = "joined"  # room-connected sent; listed to the others
    AWAY = "away"  # socket lost unasked: kept, silent, for the grace period
    LEFT = "left"  # gone for good (left, dropped, refused, grace over)


class Trigger(StrEnum):
    """What moves a phase. Client and server share the names, each table takes its own."""

    JOIN = "join"  # client: join_room called
    JOINED = "joined"  # client: room-connected handled
    JOIN_FAILED = "join_failed"  # client: refused, unreachable, timed out
    LOST = "lost"  # client: socket closed unasked, leg failed or silent
    REJOINED = "rejoined"  # client: a reconnect attempt succeeded; server: rejoin matched
    GAVE_UP = "gave_up"  # client: attempts or budget exhausted, rejoin refused
    LEAVE = "leave"  # client: disconnect() (even before joining) or a fatal loss; server: left or removed
    CLOSED = "closed"  # client: teardown finished
    ADMITTED = "admitted"  # server: token accepted, room-connected sent
    REFUSED = "refused"  # server: token refused
    DROPPED = "dropped"  # server: socket gone without leaving
    GRACE_EXPIRED = "grace_expired"  # server: the away participant did not come back in time


IN_ROOM: frozenset[Phase] = frozenset({Phase.CONNECTED, Phase.RECONNECTING})
"""Client phases in which the app counts as in the room (callbacks fire, disconnect leaves)."""

P = TypeVar("P", Phase, ParticipantPhase)
Table = Mapping[P, Mapping[Trigger, P]]

CLIENT: Table[Phase] = MappingProxyType(
    {
        Phase.IDLE: {Trigger.JOIN: Phase.CONNECTING, Trigger.LEAVE: Phase.DISCONNECTING},
        Phase.CONNECTING: {
            Trigger.JOINED: Phase.CONNECTED,
            Trigger.JOIN_FAILED: Phase.DISCONNECTING,
            Trigger.LEAVE: Phase.DISCONNECTING,
        },
        Phase.CONNECTED: {Trigger.LOST: Phase.RECONNECTING, Trigger.LEAVE: Phase.DISCONNECTING},
        Phase.RECONNECTING: {
            Trigger.REJOINED: Phase.CONNECTED,
            Trigger.GAVE_UP: Phase.DISCONNECTING,
            Trigger.LEAVE: Phase.DISCONNECTING,
        },
        Phase.DISCONNECTING: {Trigger.CLOSED: Phase.DISCONNECTED},
        Phase.DISCONNECTED: {},
    }
)

PARTICIPANT: Table[ParticipantPhase] = MappingProxyType(
    {
        ParticipantPhase.JOINING: {
            Trigger.ADMITTED: ParticipantPhase.JOINED,
            Trigger.REFUSED: ParticipantPhase.LEFT,
            Trigger.LEAVE: ParticipantPhase.LEFT,
        },
        ParticipantPhase.JOINED: {
            Trigger.DROPPED: ParticipantPhase.AWAY,
            Trigger.LEAVE: ParticipantPhase.LEFT,
        },
        ParticipantPhase.AWAY: {
            Trigger.REJOINED: ParticipantPhase.JOINED,
            Trigger.GRACE_EXPIRED: ParticipantPhase.LEFT,
            Trigger.LEAVE: ParticipantPhase.LEFT,
        },
        ParticipantPhase.LEFT: {},
    }
)


class PhaseError(LocalProtocolError):
    """A trigger the current phase cannot take: a bug in whoever drove the machine."""

    def __init__(self, trigger: Trigger, role: str, phase: StrEnum) -> None:
        super().__init__(
            f"can't handle {trigger.name} when role={role} and phase={phase.value}",
            ErrorCode.ALREADY_IN_STATE,
        )
        self.trigger = trigger
        self.role = role
        self.phase = phase


class PhaseMachine(Generic[P]):
    """One end's phase, moved only through its role's table."""

    __slots__ = ("_phase", "_table", "role")

    def __init__(self, role: str, table: Table[P], start: P) -> None:
        self.role = role
        self._table: Table[P] = table
        self._phase: P = start

    @classmethod
    def client(cls) -> PhaseMachine[Phase]:
        return PhaseMachine("client", CLIENT, Phase.IDLE)

    @classmethod
    def participant(cls) -> PhaseMachine[ParticipantPhase]:
        return PhaseMachine("participant", PARTICIPANT, ParticipantPhase.JOINING)

    @property
    def phase(self) -> P:
        return self._phase

    def can(self, trigger: Trigger) -> bool:
        return trigger in self._table[self._phase]

    def step(self, trigger: Trigger) -> P:
        """Move on ``trigger`` and return the new phase; :class:`PhaseError` if not allowed."""
        try:
            self._phase = self._table[self._phase][trigger]
        except KeyError:
            raise PhaseError(trigger, self.role, self._phase) from None
        return self._phase

    def __repr__(self) -> str:
        return f"PhaseMachine(role={self.role!r}, phase={self._phase.value!r})"
