"""Many bots in one process: rooms and tokens, the ramp, retries, shared media, progress, stop.

Start and stop in layers (aiohttp's runner is the model): the swarm's server/rooms, then the
shared media, then the bots; on stop, bots leave first, then the media and the server go.
Signal handlers are not installed here: the CLI owns them and calls :meth:`Agent.stop`.

Each bot of this process (its slice, ``i % shard_count == shard_index``) waits for its ramp
slot, gets a token, joins; a failed join is retried ``join_retries`` times after a backoff
with jitter (``join_retry``), then given up (``join_failed``). A bot that never joined makes
the run's exit code 3; a lost session 4. A bot dropped by a moderator ends ``dropped``: counted
in the summary, not a failure (exit 0 if nothing else went wrong), and never rejoined.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections import Counter
from collections.abc import Callable

import structlog

from bot.media import SharedMedia
from bot.proto import IN_ROOM
from bot.server import RoomServer

from ..bot import Bot, BotResult, Outcome, RoomLog, ScenarioRun, TokenSource, TokenSourceError
from ..config import AgentConfig, BotConfig
from ..errors import EXIT_JOIN_FAILED, EXIT_NOT_ADMITTED, EXIT_OK, EXIT_SESSION_LOST
from ..ops.observe import BotObserver, NullObserver
from ..rules.ramp import Pacer
from ..rules.retry import retryable
from .plan import Swarm, SwarmPlan

log = structlog.get_logger("bot.agent")

PROGRESS_EVERY_S = 5.0


class Agent:
    """Runs this process's bots of ``cfg`` (``plan``: what a worker was told by its parent)."""

    def __init__(
        self,
        cfg: AgentConfig,
        *,
        plan: SwarmPlan | None = None,
        events: BotObserver | None = None,
        on_server: Callable[[RoomServer], None] | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.plan = plan
        self.events: BotObserver = events if events is not None else NullObserver()
        self._on_server = on_server
        self.swarm: Swarm | None = None
        self.server: RoomServer | None = None
        self.shared: SharedMedia | None = None
        self.room_id: str | None = None
        self.results: list[BotResult] = []
        self.retries = 0
        self.failed = 0
        self.attempts_of: dict[str, int] = {}
        self.room_of: dict[str, str] = {}  # bot name -> its room, for the end-of-run lines
        self._live: dict[int, Bot] = {}
        self.room_log = RoomLog(cfg.log_room_events, len(cfg.my_bots()))
        self._stopping = asyncio.Event()
        self._rng = rng or random.Random()
        self._clock = clock
        self._pacer = Pacer()

    def stop(self) -> None:
        """Every bot leaves its room (or gives up waiting to join); :meth:`run` then returns."""
        if not self._stopping.is_set():
            log.info("stopping", bots=len(self._live))
        self._stopping.set()
        for b in self._live.values():
            b.stop()

    def shares_media(self, bot: BotConfig) -> bool:
        return self.cfg.shared_media if bot.media.shared is None else bot.media.shared

    async def run(self) -> int:
        cfg = self.cfg
        mine = cfg.my_bots()
        progress: asyncio.Task[None] | None = None
        swarm = self.swarm = Swarm(cfg, self.plan)
        try:
            await swarm.start()
            self.server = swarm.server
            if self.server is not None and self._on_server is not None:
                self._on_server(self.server)
            self.room_id = swarm.rooms[0] if swarm.rooms else None
            if self._stopping.is_set():
                return EXIT_OK
            if any(self.shares_media(b) for _, b in mine):
                self.shared = SharedMedia()
            loop = asyncio.get_running_loop()
            epoch = self.plan.epoch if self.plan is not None and self.plan.epoch else self._clock()
            start = loop.time() + (epoch - self._clock())
            schedule = cfg.schedule()
            if len(cfg.bots) > 1:
                log.info(
                    "swarm_started",
                    bots=len(mine),
                    of=len(cfg.bots),
                    rooms=len(swarm.rooms),
                    ramp_s=round(schedule.duration, 1),
                    shared_media=self.shared is not None,
                    event_loop="uvloop" if "uvloop" in type(loop).__module__ else "asyncio",
                    **self._shard(),
                )
                progress = asyncio.create_task(
                    self._progress(len(mine), start, schedule.due), name="swarm-progress"
                )
            tasks = [
                asyncio.create_task(self._lifecycle(i, bc, start + schedule.due(i)), name=f"bot:{bc.name}")
                for i, bc in mine
            ]
            self.results = list(await asyncio.gather(*tasks))
        finally:
            if progress is not None:
                progress.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await progress
            try:
                if self.shared is not None:
                    await self.shared.aclose()
            finally:
                await swarm.aclose()
        if len(cfg.bots) > 1:
            outcomes = Counter(r.outcome.value for r in self.results)
            self._log_progress(len(mine), "swarm_finished", **{k.value: outcomes[k.value] for k in Outcome})
        return self.exit_code()

    # ------------------------------------------------------------------ one bot, with retries

    async def _lifecycle(self, index: int, bc: BotConfig, due: float) -> BotResult:
        assert self.swarm is not None
        room = self.swarm.room_of(index) or self.room_id or ""
        self.room_of[bc.name] = room
        if room:
            self.events.bot_room(bc.name, room)
        structlog.contextvars.bind_contextvars(bot=bc.name, room=room or None)
        planned = due + bc.join_delay
        if not await self._wait_until(planned):
            return BotResult(bc.name, Outcome.COMPLETED, "stopped before joining")
        attempt_cfg = dataclasses.replace(bc, join_delay=0.0)
        tokens = self.swarm.tokens_for(index, bc)
        media = self.shared if self.shares_media(bc) else None
        retries = self.cfg.join_retries
        scenario = (
            ScenarioRun(bc.name, bc.scenario, seed=self.cfg.seed, events=self.events) if bc.scenario else None
        )
        paced: float | None = planned  # only the first join keeps to the ramp
        while True:  # one session, and one more after each scenario `rejoin`
            result = await self._session(
                index, bc, attempt_cfg, tokens, room, media, retries, scenario, paced
            )
            paced = None
            if not result.rejoin or self._stopping.is_set():
                return result

    async def _session(
        self,
        index: int,
        bc: BotConfig,
        attempt_cfg: BotConfig,
        tokens: TokenSource,
        room: str,
        media: SharedMedia | None,
        retries: int,
        scenario: ScenarioRun | None,
        paced: float | None = None,
    ) -> BotResult:
        """Join (with retries) and stay: the bot's result, or ``rejoin`` set for another session.

        ``paced``: the planned start (loop time) of a first join, which waits for :class:`Pacer`
        once its token is in hand, so a late token or a stalled loop never bursts two joins."""
        for attempt in range(1, retries + 2):
            self.attempts_of[bc.name] = attempt
            self.events.bot_state(bc.name, "joining")
            try:
                token = await tokens.token_for(bc.name, bc.role, bc.user_ref)
            except TokenSourceError as exc:  # the source said no: retry if it may help
                log.error("room_error", code=exc.code, error=str(exc) or type(exc).__name__)
                again, result = exc.retryable, BotResult(bc.name, Outcome.JOIN_FAILED, str(exc))
            except Exception as exc:  # a bug in a token source: report it, never crash the others
                reason = str(exc) or type(exc).__name__
                log.error("bot_failed", where="token_source", error=reason, exc_info=True)
                self.events.failure("runner")
                again, result = True, BotResult(bc.name, Outcome.JOIN_FAILED, reason)
            else:
                if attempt == 1 and paced is not None:
                    loop = asyncio.get_running_loop()
                    if not await self._wait_until(self._pacer.start_at(paced, loop.time())):
                        return BotResult(bc.name, Outcome.COMPLETED, "stopped before joining")
                bot = Bot(
                    attempt_cfg, token, room, media=media, events=self.events, scenario=scenario,
                    room_log=self.room_log,
                )  # fmt: skip
                result = await self._run_bot(index, bot)
                again = result.outcome is Outcome.JOIN_FAILED and retryable(result.code)
            if self._stopping.is_set() and result.outcome is Outcome.JOIN_FAILED:
                result = BotResult(bc.name, Outcome.COMPLETED, f"stopped while joining ({result.reason})")
            if result.outcome is not Outcome.JOIN_FAILED:
                if not (result.rejoin and not self._stopping.is_set()):
                    self.events.outcome(bc.name, result.outcome.value, result.reason)
                return result
            if not again or attempt > retries:
                self.failed += 1
                log.warning("join_failed", attempts=attempt, reason=result.reason)
                self.events.bot_state(bc.name, "failed")
                self.events.outcome(bc.name, result.outcome.value, result.reason)
                return result
            delay = self.cfg.backoff.delay(attempt, self._rng)
            self.retries += 1
            log.warning(
                "join_retry", attempt=attempt, retries=retries, delay_s=round(delay, 2), reason=result.reason
            )
            if not await self._wait_until(asyncio.get_running_loop().time() + delay):
                return BotResult(bc.name, Outcome.COMPLETED, "stopped before joining")
        raise AssertionError("unreachable")

    async def _run_bot(self, index: int, bot: Bot) -> BotResult:
        """One attempt of one bot; a bot that crashes is logged, counted and ends ``lost``."""
        self._live[index] = bot
        if self._stopping.is_set():
            bot.stop()
        try:
            return await bot.run()
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            log.error("bot_failed", error=reason, exc_info=True)
            self.events.failure("bot_task")
            return BotResult(bot.cfg.name, Outcome.LOST, reason)
        finally:
            self._live.pop(index, None)

    async def _wait_until(self, deadline: float) -> bool:
        """True when ``deadline`` (loop time) came, False when a stop came first."""
        delay = deadline - asyncio.get_running_loop().time()
        if delay <= 0:
            return not self._stopping.is_set()
        try:
            await asyncio.wait_for(self._stopping.wait(), delay)
        except TimeoutError:
            return True
        return False

    # ------------------------------------------------------------------ progress and outcome

    def _shard(self) -> dict[str, str]:
        cfg = self.cfg
        return {"shard": f"{cfg.shard_index}/{cfg.shard_count}"} if cfg.shard_count > 1 else {}

    def counts(self) -> dict[str, int]:
        """Bots of this process now: in a room, publishing; and failures and retries so far."""
        joined = published = 0
        for bot in self._live.values():
            if bot.rtc is not None and bot.rtc.phase in IN_ROOM:
                joined += 1
                published += bot.published.is_set()
        out = {"joined": joined, "published": published, "failed": self.failed, "retries": self.retries}
        if self.shared is not None:  # frames the shared encoders skipped because they ran late
            out["media_skipped"] = sum(int(getattr(s, "frames_skipped", 0)) for s in self.shared.streams)
        return out

    def _log_progress(self, target: int, event: str = "swarm_progress", **extra: object) -> None:
        log.info(event, **self.counts(), target=target, **extra, **self._shard())

    async def _progress(self, target: int, start: float, due: Callable[[int], float]) -> None:
        loop = asyncio.get_running_loop()
        indexes = [i for i, _ in self.cfg.my_bots()]
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            now = loop.time()
            self._log_progress(target, started=sum(1 for i in indexes if start + due(i) <= now))

    def exit_code(self) -> int:
        outcomes = {r.outcome for r in self.results}
        for r in self.results:
            if r.outcome not in (Outcome.COMPLETED, Outcome.ROOM_ENDED) and len(self.results) <= 20:
                log.warning(
                    "bot_ended",
                    bot=r.name,
                    room=self.room_of.get(r.name) or None,
                    outcome=r.outcome.value,
                    reason=r.reason,
                )
        if Outcome.JOIN_FAILED in outcomes:
            return EXIT_JOIN_FAILED
        if Outcome.LOST in outcomes:
            return EXIT_SESSION_LOST
        if Outcome.DENIED in outcomes or Outcome.WAIT_TIMEOUT in outcomes:
            return EXIT_NOT_ADMITTED
        return EXIT_OK

    def first_failure(self) -> str | None:
        """One line for stderr about the run's failures, or None."""
        for outcome, what in (
            (Outcome.JOIN_FAILED, "could not join"),
            (Outcome.LOST, "lost its session"),
            (Outcome.DENIED, "was denied entry by a moderator"),
            (Outcome.WAIT_TIMEOUT, "was not let in within room_info.wait_timeout_s"),
        ):
            failed = [r for r in self.results if r.outcome is outcome]
            if not failed:
                continue
            first = failed[0]
            tries = self.attempts_of.get(first.name, 1)
            after = f" after {tries} attempts" if tries > 1 else ""
            if len(self.results) == 1:
                return f"bot {first.name} {what}{after}: {first.reason}"
            plural = "bots" if len(failed) > 1 else "bot"
            return (
                f"{len(failed)} of {len(self.results)} {plural} {what}; first, {first.name}{after}: "
                f"{first.reason}"
            )
        return None
