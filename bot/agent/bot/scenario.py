"""Runs a bot's scenario (``bot.agent.config.scenario``) over its sessions.

A :class:`ScenarioRun` belongs to one bot for the whole run: the runner makes it, every session
of the bot (the first join, each ``rejoin``) drives it while in the room. The moments are drawn
up front from ``Random(f"{seed}:{bot name}")``, so a seed gives every bot the same timeline on
every run, whatever the machine's timing. Each action is logged (``scenario_action``: the
action, the step, when it was due, when it ran, the ``outcome``: ``ok``, ``failed`` with the
``error``, ``timeout``) and counted (``enx_scenario_actions_total{action,outcome}``). A failing
action never ends the bot; ``leave`` and ``rejoin`` end the session (the runner joins again with
a fresh token for ``rejoin``).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, Protocol

from aiortc.mediastreams import MediaStreamTrack

from bot.media import MediaSpec, SharedMedia, open_media
from bot.rtc import EnxRtc, RoomError

from ..config import BotConfig
from ..config.scenario import ScenarioStep
from ..ops.observe import BotObserver


class Bot(Protocol):
    """What a scenario drives (``bot.agent.bot.run.Bot``)."""

    cfg: BotConfig
    rtc: EnxRtc | None
    log: Any
    media: SharedMedia | None

    def remote_streams(self) -> dict[object, dict[str, Any]]: ...
    async def send_message(self, text: str, to: Iterable[str] | str = ()) -> dict[str, Any]: ...
    async def send_user_data(self, data: object, to: Iterable[str] | str = ()) -> dict[str, Any]: ...


Ending = Literal["leave", "rejoin"]
HORIZON_S = 7 * 24 * 3600.0  # an `every` step is not planned further than a week ahead


class ScenarioRun:
    def __init__(
        self,
        bot_name: str,
        steps: Sequence[ScenarioStep],
        *,
        seed: int | None,
        events: BotObserver,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bot_name = bot_name
        self.steps = tuple(steps)
        self._rng = random.Random(f"{seed}:{bot_name}") if seed is not None else random.Random()
        self._events = events
        self._clock = clock
        self._t0: float | None = None
        self._queue: list[tuple[float, int, int]] = []  # (due_s, order, step index)
        self._order = 0
        self._done: dict[int, int] = {}  # step index -> times run
        self._heard: list[str] = []
        self._heard_changed = asyncio.Event()
        for index, step in enumerate(self.steps):
            self._plan(index, step, 0.0)

    def __bool__(self) -> bool:
        return bool(self.steps)

    # ------------------------------------------------------------------ the timeline

    def _plan(self, index: int, step: ScenarioStep, after_s: float) -> None:
        low, high = step.window_s
        due = after_s + (low if low == high else self._rng.uniform(low, high))
        if due <= HORIZON_S:
            heapq.heappush(self._queue, (round(due, 3), self._order, index))
            self._order += 1

    def planned(self) -> list[tuple[float, str]]:
        """``(due_s, action)`` of what is planned now, in order (for logs and tests)."""
        return [(due, self.steps[i].do) for due, _, i in sorted(self._queue)]

    def now_s(self) -> float:
        return 0.0 if self._t0 is None else self._clock() - self._t0

    def heard(self, payload: dict[str, Any]) -> None:
        """A chat message reached the bot (for ``wait_for: {text}``)."""
        message = payload.get("message")
        if isinstance(message, str):
            self._heard.append(message)
            del self._heard[:-100]
            self._heard_changed.set()

    async def drive(self, bot: Bot) -> Ending:
        """Run the steps that fall due while this session lasts; returns when a step ends it
        (the caller cancels it when the session ends otherwise)."""
        if self._t0 is None:
            self._t0 = self._clock()
            bot.log.info("scenario_planned", steps=[{"due_s": d, "do": a} for d, a in self.planned()[:50]])
        while self._queue:
            due, _, index = self._queue[0]
            delay = due - self.now_s()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            heapq.heappop(self._queue)
            step = self.steps[index]
            self._done[index] = self._done.get(index, 0) + 1
            if step.every is not None and (step.times is None or self._done[index] < step.times):
                self._plan(index, step, due)
            ending = await self._run(bot, index, step, due)
            if ending is not None:
                return ending
        await asyncio.Event().wait()  # nothing left to do: stay as long as the session does
        raise AssertionError("unreachable")

    async def _run(self, bot: Bot, index: int, step: ScenarioStep, due: float) -> Ending | None:
        started = self.now_s()
        outcome, error, fields = "ok", "", {}
        try:
            fields = await self._act(bot, step) or {}
        except TimeoutError:
            outcome, error = "timeout", f"not met within {step.wait_s:g} s"
        except RoomError as exc:
            outcome, error = "failed", f"{exc.code}: {exc.msg}"
        except Exception as exc:  # an action must never end the bot
            outcome, error = "failed", str(exc) or type(exc).__name__
            bot.log.warning("scenario_action_failed", action=step.do, step=index, exc_info=True)
        line = {"action": step.do, "step": index, "due_s": due, "t_s": round(started, 3), "outcome": outcome}
        if error:
            line["error"] = error[:300]
        (bot.log.info if outcome == "ok" else bot.log.warning)("scenario_action", **line, **fields)
        self._events.scenario_action(self.bot_name, step.do, outcome)
        if outcome == "ok" and step.do in ("leave", "rejoin"):
            return step.do
        return None

    # ------------------------------------------------------------------ the actions

    async def _act(self, bot: Bot, step: ScenarioStep) -> dict[str, Any] | None:
        rtc = bot.rtc
        if rtc is None:
            raise RuntimeError("not in a room")
        do = step.do
        if do in ("mute_audio", "unmute_audio"):
            await rtc.mute_self_audio(do == "mute_audio")
        elif do in ("mute_video", "unmute_video"):
            await rtc.mute_self_video(do == "mute_video")
        elif do in ("audio_only", "video_on"):
            await rtc.set_audio_only_mode(do == "audio_only")
        elif do == "chat":
            text = (step.text or "").replace("{name}", bot.cfg.name)
            ack = await bot.send_message(text, tuple(step.to or ()))
            return {"size": len(text), "result": ack.get("result")}
        elif do == "user_data":
            ack = await bot.send_user_data(step.data, tuple(step.to or ()))
            return {"result": ack.get("result")}
        elif do in ("subscribe", "unsubscribe"):
            return {"streams": await self._subscription(bot, step)}
        elif do == "wait_for":
            await asyncio.wait_for(self._wait_for(bot, step), step.wait_s)
        elif do == "switch_media":
            return await self._switch_media(bot, rtc, step)
        return None  # leave, rejoin: the caller ends the session

    async def _switch_media(self, bot: Bot, rtc: EnxRtc, step: ScenarioStep) -> dict[str, Any]:
        """Publish another file on the same stream: from the process's shared media (read once
        for every bot switching to it) or a reader of its own, for the kinds the bot sends."""
        m = bot.cfg.media
        spec = MediaSpec(kind="file", file=step.file, loop=m.loop)
        li = bot.cfg.join_local_info()
        audio: MediaStreamTrack | None
        video: MediaStreamTrack | None
        if bot.media is not None:
            audio, video = bot.media.tracks(spec, audio=li.audio, video=li.video)
        else:
            audio, video = open_media(spec, audio=li.audio, video=li.video, label=bot.cfg.name)
        try:
            replaced = await rtc.switch_media(audio, video)
        except BaseException:
            for track in (audio, video):
                if track is not None:
                    track.stop()
            raise
        for track in replaced:
            track.stop()
        return {"file": step.file, "kinds": [k for k, t in (("audio", audio), ("video", video)) if t]}

    async def _subscription(self, bot: Bot, step: ScenarioStep) -> list[int | str]:
        rtc = bot.rtc
        assert rtc is not None
        wanted = set(step.users or ())
        streams = [
            sid
            for sid, info in bot.remote_streams().items()
            if isinstance(sid, int | str)
            and (not wanted or info.get("name") in wanted or info.get("clientId") in wanted)
        ]
        if wanted and not streams:
            raise RuntimeError(f"no stream of {', '.join(sorted(wanted))} in the room")
        subscribed = set(rtc.subscribed_stream_ids)
        for sid in streams:
            if step.do == "subscribe" and sid not in subscribed:
                await rtc.subscribe(sid)
            elif step.do == "unsubscribe" and sid in subscribed:
                await rtc.unsubscribe(sid)
        return streams

    async def _wait_for(self, bot: Bot, step: ScenarioStep) -> None:
        while True:
            rtc = bot.rtc
            count = len(rtc.get_user_list()) if rtc is not None else 0
            people = step.participants is None or count >= step.participants
            text = step.text is None or any(step.text in heard for heard in self._heard)
            if people and text:
                return
            self._heard_changed.clear()
            with contextlib.suppress(TimeoutError):  # participants are polled, chat is woken
                await asyncio.wait_for(self._heard_changed.wait(), 0.25)
