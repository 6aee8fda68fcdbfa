"""Many bots in one process: start the embedded server if asked, run the bots, stop them all.

Start and stop in layers (aiohttp's runner is the model): server, then bots; on stop, bots
leave first, then the server goes. Signal handlers are not installed here: the CLI owns them
and calls :meth:`Agent.stop`.
"""

from __future__ import annotations

import asyncio
import secrets

import structlog

from bot.server import RoomServer

from .bot import Bot, BotResult, Outcome
from .config import AgentConfig
from .errors import EXIT_JOIN_FAILED, EXIT_OK, EXIT_SESSION_LOST, JoinError
from .tokens import RestTokens, StaticToken, TokenSource

log = structlog.get_logger("bot.agent")


class EmbeddedTokens:
    """Tokens minted in-process by the embedded room server."""

    def __init__(self, server: RoomServer, room_id: str) -> None:
        self.server = server
        self.room_id = room_id

    async def token_for(self, name: str, role: str, user_ref: str) -> str:
        return self.server.mint_token(self.room_id, name=name, role=role, user_ref=user_ref or name)


class Agent:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.server: RoomServer | None = None
        self.bots: list[Bot] = []
        self.results: list[BotResult] = []
        self._stopping = asyncio.Event()
        self.room_id: str | None = None

    def stop(self) -> None:
        """Every bot leaves its room; :meth:`run` then returns."""
        if not self._stopping.is_set():
            log.info("stopping", bots=len(self.bots))
        self._stopping.set()
        for b in self.bots:
            b.stop()

    async def _start_server(self) -> TokenSource:
        emb = self.cfg.embedded
        self.server = RoomServer(
            app_id="embedded", app_key=secrets.token_urlsafe(32), host=emb.host, port=emb.port
        )
        try:
            await self.server.start()
        except OSError as exc:
            raise JoinError(
                f"the embedded room server cannot listen on {emb.host}:{emb.port} ({exc.strerror or exc}): "
                "choose another embedded.port"
            ) from None
        room = self.server.create_room(name=emb.room_name)
        self.room_id = str(room["room_id"])
        log.info("embedded_server_started", url=self.server.url, room_id=self.room_id)
        return EmbeddedTokens(self.server, self.room_id)

    def _token_source(self) -> TokenSource:
        cfg = self.cfg
        if cfg.mode == "token":
            return StaticToken(cfg.token or "")
        assert cfg.app_id and cfg.app_key and cfg.room_id
        self.room_id = cfg.room_id
        return RestTokens(cfg.api_url, cfg.app_id, cfg.app_key, cfg.room_id)

    async def run(self) -> int:
        try:
            tokens = await self._start_server() if self.cfg.mode == "embedded" else self._token_source()
            for bc in self.cfg.bots:
                source = StaticToken(bc.token) if bc.token else tokens
                self.bots.append(Bot(bc, source, self.room_id or ""))
            if self._stopping.is_set():
                return EXIT_OK
            tasks = [asyncio.create_task(b.run(), name=f"bot:{b.cfg.name}") for b in self.bots]
            self.results = list(await asyncio.gather(*tasks))
        finally:
            if self.server is not None:
                await self.server.aclose()
        return self.exit_code()

    def exit_code(self) -> int:
        outcomes = {r.outcome for r in self.results}
        for r in self.results:
            if r.outcome is not Outcome.COMPLETED:
                log.warning("bot_ended", bot=r.name, outcome=r.outcome.value, reason=r.reason)
        if Outcome.JOIN_FAILED in outcomes:
            return EXIT_JOIN_FAILED
        if Outcome.LOST in outcomes:
            return EXIT_SESSION_LOST
        return EXIT_OK

    def first_failure(self) -> str | None:
        for r in self.results:
            if r.outcome is Outcome.JOIN_FAILED:
                return f"bot {r.name} could not join: {r.reason}"
        for r in self.results:
            if r.outcome is Outcome.LOST:
                return f"bot {r.name} lost its session: {r.reason}"
        return None
