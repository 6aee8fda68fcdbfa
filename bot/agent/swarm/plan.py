"""A swarm's rooms and token sources: what every process of one run must agree on.

:class:`Swarm` starts the embedded room server (``server: embedded``) or opens one REST
session (credentials), creates the rooms a config asks for (``rooms: 20``), and hands each bot
the token source of its room. The parent of worker processes does that once and passes the
outcome to its workers as a :class:`SwarmPlan` (the ``ENX_SWARM_PLAN`` environment variable),
so all workers use the same rooms and the same server, and share one ramp clock.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import structlog

from bot.server import RoomServer

from ..bot.tokens import RestApi, StaticToken, TokenSource, UrlTokens
from ..config import AgentConfig, BotConfig
from ..errors import ConfigError, JoinError

log = structlog.get_logger("bot.agent")

PLAN_ENV = "ENX_SWARM_PLAN"


@dataclass(frozen=True, kw_only=True)
class SwarmPlan:
    """What a worker process is told by its parent (JSON in ``ENX_SWARM_PLAN``)."""

    rooms: tuple[str, ...] = ()
    """Room ids, in the order bots are assigned to them (empty: the config's own)."""
    api_url: str | None = None
    """Mint tokens here instead of what the config says (the parent's embedded server)."""
    app_id: str | None = None
    app_key: str | None = None
    epoch: float | None = None
    """Wall-clock time (``time.time()``) at which the ramp starts, the same in every worker."""
    parent: int = 0
    """The parent's pid: a worker exits when it is not its parent any more."""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    def __repr__(self) -> str:
        return f"SwarmPlan(rooms={len(self.rooms)}, api_url={self.api_url!r}, epoch={self.epoch})"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SwarmPlan | None:
        text = env.get(PLAN_ENV)
        if not text:
            return None
        try:
            data = json.loads(text)
            data["rooms"] = tuple(str(r) for r in data.get("rooms", ()))
            return cls(**data)
        except (ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{PLAN_ENV} is not a plan from an enx-bot parent process ({exc})") from None


class EmbeddedTokens:
    """Tokens minted in-process by the embedded room server."""

    def __init__(self, server: RoomServer, room_id: str) -> None:
        self.server = server
        self.room_id = room_id

    async def token_for(self, name: str, role: str, user_ref: str) -> str:
        return self.server.mint_token(self.room_id, name=name, role=role, user_ref=user_ref or name)


class Swarm:
    """The rooms and token sources of one process's bots. ``await start()``, ``aclose()``."""

    def __init__(self, cfg: AgentConfig, plan: SwarmPlan | None = None) -> None:
        self.cfg = cfg
        self.plan = plan
        self.server: RoomServer | None = None
        self.api: RestApi | None = None
        self.rooms: list[str] = []
        self._sources: dict[str, TokenSource] = {}

    async def start(self) -> None:
        cfg, plan = self.cfg, self.plan
        if plan is not None and plan.api_url:
            assert plan.app_id and plan.app_key
            self.api = RestApi(plan.api_url, plan.app_id, plan.app_key)
        elif cfg.mode == "embedded":
            await self._start_server()
        elif cfg.app_id and cfg.app_key and cfg.mode in ("credentials", "token_url"):
            self.api = RestApi(cfg.api_url, cfg.app_id, cfg.app_key)
        if plan is not None and plan.rooms:
            self.rooms = list(plan.rooms)
        elif cfg.creates_rooms:
            if cfg.shard_count > 1:
                raise ConfigError(
                    f"{cfg.path}: rooms: {cfg.rooms} creates rooms, and each of the "
                    f"{cfg.shard_count} shards (ENX_SHARD_COUNT) would create its own: list the "
                    "room ids in rooms instead"
                )
            assert isinstance(cfg.rooms, int)
            await self._create_rooms(cfg.rooms)
        elif cfg.room_ids:
            self.rooms = cfg.room_ids
        elif self.server is not None:
            self.rooms = [str(self.server.create_room(name=cfg.embedded.room_name)["room_id"])]
        if self.server is not None:
            log.info(
                "embedded_server_started",
                url=self.server.url,
                room_id=self.rooms[0] if len(self.rooms) == 1 else None,
                rooms=len(self.rooms),
            )

    async def _start_server(self) -> None:
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

    async def _create_rooms(self, count: int) -> None:
        per_room = self.cfg.bots_per_room or -(-len(self.cfg.bots) // count)
        base = self.cfg.embedded.room_name if self.server is not None else "enx-bot swarm"
        for k in range(count):
            name = f"{base} {k + 1}/{count}"
            if self.server is not None:
                self.rooms.append(str(self.server.create_room(name=name)["room_id"]))
            else:
                assert self.api is not None
                self.rooms.append(await self.api.create_room(name, participants=per_room))
        log.info(
            "rooms_created",
            rooms=count,
            bots_per_room=per_room,
            url=self.server.url if self.server is not None else self.cfg.api_url,
            room_ids=self.rooms if count <= 20 else [*self.rooms[:20], "..."],
        )

    def room_of(self, index: int) -> str | None:
        """The room bot ``index`` joins (None where its token names it)."""
        if not self.rooms or self.cfg.mode in ("token", "token_file"):
            return None
        return self.rooms[self.cfg.room_of(index, len(self.rooms))]

    def tokens_for(self, index: int, bot: BotConfig) -> TokenSource:
        cfg = self.cfg
        if bot.token:
            return StaticToken(bot.token)
        if cfg.mode == "token":
            return StaticToken(cfg.token or "")
        if cfg.mode == "token_file":
            return StaticToken(cfg.issued_tokens[index])
        room = self.room_of(index)
        assert room is not None
        source = self._sources.get(room)
        if source is None:
            if cfg.mode == "token_url" and not (self.plan and self.plan.api_url):
                assert cfg.token_url
                source = UrlTokens(cfg.token_url, room, self.api.session if self.api else None)
            elif self.api is not None:
                source = self.api.tokens(room)
            else:
                assert self.server is not None
                source = EmbeddedTokens(self.server, room)
            self._sources[room] = source
        return source

    def plan_for_workers(self, epoch: float, parent: int) -> SwarmPlan:
        """What every worker needs to join the same rooms through the same server."""
        if self.server is not None:
            return SwarmPlan(
                rooms=tuple(self.rooms),
                api_url=self.server.api_url,
                app_id=self.server.app_id,
                app_key=self.server.app_key,
                epoch=epoch,
                parent=parent,
            )
        return SwarmPlan(rooms=tuple(self.rooms), epoch=epoch, parent=parent)

    async def aclose(self) -> None:
        """Close the REST session and the embedded server (after the bots have left). Idempotent."""
        api, self.api = self.api, None
        server, self.server = self.server, None
        try:
            if api is not None:
                await api.aclose()
        finally:
            if server is not None:
                await server.aclose()
