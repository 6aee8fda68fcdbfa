"""Session phase tables driven with no event loop: a client and the server's participant together.

In the style of h11's ``ConnectionPair``: each scenario pushes triggers into both machines, as a
socket would, and checks that their phases agree at every step.
"""

from __future__ import annotations

import pytest

from bot.proto import (
    CLIENT,
    IN_ROOM,
    PARTICIPANT,
    ParticipantPhase,
    Phase,
    PhaseError,
    PhaseMachine,
    Trigger,
)


class Pair:
    """One client and the server's record of it, moved by what crosses the wire."""

    def __init__(self) -> None:
        self.client = PhaseMachine.client()
        self.server = PhaseMachine.participant()

    def join(self) -> None:
        self.client.step(Trigger.JOIN)
        self.server.step(Trigger.ADMITTED)
        self.client.step(Trigger.JOINED)

    def link_lost(self) -> None:
        self.client.step(Trigger.LOST)
        self.server.step(Trigger.DROPPED)

    def rejoin(self) -> None:
        self.server.step(Trigger.REJOINED)
        self.client.step(Trigger.REJOINED)

    def leave(self) -> None:
        self.client.step(Trigger.LEAVE)
        self.server.step(Trigger.LEAVE)
        self.client.step(Trigger.CLOSED)

    def consistent(self) -> bool:
        """The client thinks it is in the room exactly while the server still keeps it."""
        kept = self.server.phase in (ParticipantPhase.JOINED, ParticipantPhase.AWAY)
        return (self.client.phase in IN_ROOM) == kept


def test_join_drop_rejoin_leave_keep_both_ends_in_step() -> None:
    pair = Pair()
    pair.join()
    assert (pair.client.phase, pair.server.phase) == (Phase.CONNECTED, ParticipantPhase.JOINED)
    assert pair.consistent()
    for _ in range(3):  # consecutive faults, each healed
        pair.link_lost()
        assert (pair.client.phase, pair.server.phase) == (Phase.RECONNECTING, ParticipantPhase.AWAY)
        assert pair.consistent()
        pair.rejoin()
        assert pair.consistent()
    pair.leave()
    assert (pair.client.phase, pair.server.phase) == (Phase.DISCONNECTED, ParticipantPhase.LEFT)
    assert pair.consistent()


def test_grace_expiry_then_a_late_client_gives_up() -> None:
    pair = Pair()
    pair.join()
    pair.link_lost()
    pair.server.step(Trigger.GRACE_EXPIRED)
    assert pair.server.phase is ParticipantPhase.LEFT
    assert not pair.server.can(Trigger.REJOINED)  # a rejoin after the grace is refused
    with pytest.raises(PhaseError):
        pair.server.step(Trigger.REJOINED)
    pair.client.step(Trigger.GAVE_UP)
    pair.client.step(Trigger.CLOSED)
    assert pair.client.phase is Phase.DISCONNECTED and pair.consistent()


def test_refused_token_ends_both_sides() -> None:
    pair = Pair()
    pair.client.step(Trigger.JOIN)
    pair.server.step(Trigger.REFUSED)
    pair.client.step(Trigger.JOIN_FAILED)
    pair.client.step(Trigger.CLOSED)
    assert pair.client.phase is Phase.DISCONNECTED and pair.server.phase is ParticipantPhase.LEFT


@pytest.mark.parametrize(
    ("machine", "trigger", "message"),
    [
        (PhaseMachine.client, Trigger.LOST, "can't handle LOST when role=client and phase=idle"),
        (PhaseMachine.client, Trigger.REJOINED, "can't handle REJOINED when role=client and phase=idle"),
        (
            PhaseMachine.participant,
            Trigger.REJOINED,
            "can't handle REJOINED when role=participant and phase=joining",
        ),
    ],
)
def test_an_illegal_move_names_trigger_role_and_phase(machine, trigger, message) -> None:  # type: ignore[no-untyped-def]
    m = machine()
    before = m.phase
    with pytest.raises(PhaseError, match=message) as err:
        m.step(trigger)
    assert m.phase == before  # nothing moved
    assert err.value.code == 1177  # ALREADY_IN_STATE, as the SDK reports a second join


def test_second_join_is_refused_and_disconnected_is_final() -> None:
    m = PhaseMachine.client()
    m.step(Trigger.JOIN)
    with pytest.raises(PhaseError):
        m.step(Trigger.JOIN)
    m.step(Trigger.LEAVE)
    m.step(Trigger.CLOSED)
    assert all(not m.can(t) for t in Trigger)


def test_disconnect_before_join_is_final() -> None:
    """``EnxRtc.disconnect()`` on an instance that never joined: closed, and no join after."""
    m = PhaseMachine.client()
    m.step(Trigger.LEAVE)
    m.step(Trigger.CLOSED)
    assert m.phase is Phase.DISCONNECTED and not m.can(Trigger.JOIN)


def test_tables_cover_every_phase_and_only_name_known_phases() -> None:
    for table, phases in ((CLIENT, Phase), (PARTICIPANT, ParticipantPhase)):
        assert set(table) == set(phases)
        for moves in table.values():
            assert set(moves.values()) <= set(phases)
    # every non-final phase can be left; the final ones cannot
    assert [p for p, moves in CLIENT.items() if not moves] == [Phase.DISCONNECTED]
    assert [p for p, moves in PARTICIPANT.items() if not moves] == [ParticipantPhase.LEFT]


def test_phases_compare_as_their_wire_strings() -> None:
    assert Phase.CONNECTED == "connected" and "reconnecting" in IN_ROOM
    assert ParticipantPhase.AWAY == "away"
