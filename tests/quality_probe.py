"""Helpers of the quality tests: a monitoring Bot in this process (its log lines captured with
their arrival time) and a publisher whose synthetic sources the test controls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog

from bot.agent.bot.run import Bot
from bot.agent.config import parse_config
from bot.agent.ops.observe import BotObserver
from bot.media import SyntheticVideoTrack, ToneAudioTrack
from bot.rtc import EnxRtc
from bot.server import RoomServer


@dataclass
class Timed:
    """Log lines as they come, each with ``at`` (monotonic seconds)."""

    lines: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, _logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
        self.lines.append({**event, "at": time.monotonic()})
        raise structlog.DropEvent

    def named(self, name: str, user: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.lines if e["event"] == name and (user is None or e.get("user") == user)]

    async def wait(
        self, name: str, user: str | None = None, within: float = 15, after: float = 0.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for e in self.named(name, user):
                if e["at"] >= after:
                    return e
            await asyncio.sleep(0.02)
        pytest.fail(f"no {name} within {within} s; saw {[e['event'] for e in self.lines][-40:]}")


@dataclass
class Publisher:
    rtc: EnxRtc
    video: SyntheticVideoTrack
    audio: ToneAudioTrack


async def publisher(server: RoomServer, room_id: str, name: str = "alice") -> Publisher:
    video = SyntheticVideoTrack(320, 180, 15)
    audio = ToneAudioTrack()
    rtc = EnxRtc(audio_track=audio, video_track=video)
    published = asyncio.Event()
    rtc.on_published_stream = lambda _p: published.set()
    token = server.mint_token(room_id, name=name, role="participant", user_ref=name)
    await rtc.join_room(token, {"audio": True, "video": True, "name": name}, {})
    await asyncio.wait_for(published.wait(), 15)
    return Publisher(rtc, video, audio)


class Monitor:
    """A monitoring bot (``receive.quality``) running in this process."""

    def __init__(
        self,
        server: RoomServer,
        room_id: str,
        quality: dict[str, Any],
        events: BotObserver | None = None,
        **receive: Any,
    ) -> None:
        raw = {
            "token": "t",
            "bots": [
                {
                    "name": "monitor",
                    "local_info": {"audio": False, "video": False},
                    "receive": {"subscribe": "all", "stats_interval_s": 1, "quality": quality, **receive},
                }
            ],
        }
        self.cfg = parse_config(raw, {})
        self.token = server.mint_token(room_id, name="monitor", role="participant", user_ref="monitor")
        self.logs = Timed()
        self.events = events
        self.bot: Bot | None = None
        self._task: asyncio.Task[Any] | None = None
        self._config: dict[str, Any] = {}

    async def __aenter__(self) -> Monitor:
        self._config = structlog.get_config()
        structlog.configure(processors=[structlog.contextvars.merge_contextvars, self.logs])
        self.bot = Bot(self.cfg.bots[0], self.token, events=self.events)
        self._task = asyncio.create_task(self.bot.run())
        await self.logs.wait("room_connected")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.bot is not None and self._task is not None
        self.bot.stop()
        await asyncio.wait_for(self._task, 15)
        structlog.configure(**self._config)

    async def subscribed(self, user: str = "alice") -> dict[str, Any]:
        return await self.logs.wait("subscribed_stream", user)

    async def stats(self, check: Callable[[dict[str, Any]], bool], within: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for e in self.logs.named("stream_stats"):
                if check(e):
                    return e
            await asyncio.sleep(0.05)
        pytest.fail(f"no stream_stats like that: {self.logs.named('stream_stats')[-3:]}")
