"""The bandwidth fallback policy on its own, with a fake clock."""

from __future__ import annotations

from bot.agent.rules.policy import Action, BandwidthFallback, FallbackSettings


def policy(**kw: float | bool) -> BandwidthFallback:
    return BandwidthFallback(FallbackSettings(**kw))  # type: ignore[arg-type]


def test_alert_falls_back_at_once() -> None:
    p = policy(restore_after_s=5, min_hold_s=10)
    assert p.on_alert(100.0) is Action.FALLBACK and p.audio_only
    assert p.on_alert(101.0) is None  # already audio-only


def test_restore_needs_continuous_restore_and_the_hold() -> None:
    p = policy(restore_after_s=5, min_hold_s=10)
    p.on_alert(0.0)
    assert p.on_restored(1.0) is None
    assert p.next_deadline() == 10.0  # hold (0+10) is later than restore (1+5)
    assert p.poll(9.99) is None
    assert p.poll(10.0) is Action.RESTORE and not p.audio_only
    assert p.next_deadline() is None


def test_restore_after_wins_when_later_than_hold() -> None:
    p = policy(restore_after_s=5, min_hold_s=2)
    p.on_alert(0.0)
    p.on_restored(3.0)
    assert p.poll(7.9) is None
    assert p.poll(8.0) is Action.RESTORE


def test_alert_during_restore_window_starts_over() -> None:
    p = policy(restore_after_s=5, min_hold_s=0)
    p.on_alert(0.0)
    p.on_restored(1.0)
    assert p.on_alert(4.0) is None  # still audio-only, restore window reset
    assert p.poll(6.5) is None
    assert p.next_deadline() is None  # needs a new restore
    p.on_restored(7.0)
    assert p.poll(11.9) is None and p.poll(12.0) is Action.RESTORE


def test_repeated_alerts_extend_the_hold() -> None:
    p = policy(restore_after_s=1, min_hold_s=10)
    p.on_alert(0.0)
    p.on_alert(8.0)  # hold now until 18
    p.on_restored(9.0)
    assert p.poll(17.0) is None and p.poll(18.0) is Action.RESTORE


def test_flapping_input_gives_one_fallback_and_one_restore() -> None:
    p = policy(restore_after_s=3, min_hold_s=5)
    actions = []
    t = 0.0
    for _ in range(20):  # alert / restore every 0.5 s for 10 s
        actions.append(p.on_alert(t))
        actions.append(p.on_restored(t + 0.5))
        t += 1.0
    actions.append(p.poll(t + 10))
    got = [a for a in actions if a is not None]
    assert got == [Action.FALLBACK, Action.RESTORE]
    assert (p.fallbacks, p.restores) == (1, 1)


def test_restored_without_alert_does_nothing() -> None:
    p = policy()
    assert p.on_restored(1.0) is None and p.poll(100.0) is None and not p.audio_only


def test_disabled_policy_never_acts() -> None:
    p = policy(enabled=False)
    assert p.on_alert(0.0) is None and p.on_restored(1.0) is None and p.poll(100.0) is None
    assert not p.audio_only
