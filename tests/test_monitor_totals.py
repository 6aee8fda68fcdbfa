"""A bot feeds its media totals (sent and received bytes, packets, lost) to the observer, from
``on_stats`` when ``receive.stats_interval_s`` is set, else from a timer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_recorder import _publisher

import bot.agent.bot.run as bot_module
from bot.agent.bot.run import Bot
from bot.agent.config import parse_config
from bot.agent.ops.observe import NullObserver
from bot.server import RoomServer


class Totals:
    """An observer that keeps the media totals (a NullObserver is skipped: nobody listens)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(NullObserver(), name)

    def media(self, bot: str, *totals: Any, **kw: Any) -> None:
        self.calls.append(tuple(totals))


@pytest.mark.slow
@pytest.mark.parametrize("stats_interval", [0.5, None])
async def test_bot_reports_media_totals(
    room_server: RoomServer, monkeypatch: pytest.MonkeyPatch, stats_interval: float | None
) -> None:
    monkeypatch.setattr(bot_module, "TOTALS_INTERVAL_S", 0.5)
    room_id = room_server.create_room(name="totals")["room_id"]
    receive: dict[str, Any] = {"subscribe": "all"}
    if stats_interval is not None:
        receive["stats_interval_s"] = stats_interval
    media = {"width": 160, "height": 96, "fps": 10}
    cfg = parse_config({"token": "t", "bots": [{"name": "b", "media": media, "receive": receive}]}, {})
    token = room_server.mint_token(room_id, name="b", role="participant", user_ref="b")
    events = Totals()
    b = Bot(cfg.bots[0], token, events=events)
    task = asyncio.create_task(b.run())
    alice = None
    try:
        await asyncio.wait_for(b.published.wait(), 15)
        alice, _ = await _publisher(room_server, room_id, "alice")
        for _ in range(60):
            await asyncio.sleep(0.25)
            if events.calls and events.calls[-1][2] > 0 and events.calls[-1][0] > 0:
                break
        else:
            pytest.fail(f"no media totals with both directions: {events.calls[-3:]}")
    finally:
        b.stop()
        await asyncio.wait_for(task, 10)
        if alice is not None:
            await alice.disconnect()
    sent_bytes, sent_packets, recv_bytes, recv_packets, lost = events.calls[-1]
    assert sent_bytes > sent_packets > 0 and recv_bytes > recv_packets > 0 and lost >= 0
    # totals never go down
    for before, after in zip(events.calls, events.calls[1:], strict=False):
        assert all(a >= b for a, b in zip(after, before, strict=True)), (before, after)
