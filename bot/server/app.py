"""RoomServer: the local EnableX-style room server (REST + Socket.IO + aiortc media).

Started and stopped in layers (aiohttp ``AppRunner`` + ``TCPSite``); ``aclose`` disconnects
every socket, closes every peer connection, then the web server, then the store. Holds all of
its state, so any number of servers can live in one process.

``data_dir`` keeps rooms and used tokens in ``<data_dir>/rooms.sqlite3`` (see :mod:`.store`),
so a server restarted on the same directory lists the same rooms and accepts the rejoin of a
client with its original token; ``None`` (the default) or ``":memory:"`` keeps them in memory.
``ice_servers`` go to clients in ``room-connected.iceServers``; the server's own peer
connections gather host candidates only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog
from aiohttp import web

from bot.proto import IceServer, MediaKind, redact

from .api import MediaCounts
from .bandwidth import BandwidthSettings
from .errors import BadRequest
from .media import MediaServer
from .metrics import server_registry
from .presence import RECONNECT_GRACE_S
from .rest import API_PREFIX, make_app
from .rest_room_control import add_routes as add_room_control_routes
from .rooms import RoomRegistry, check_role
from .signalling import Signalling
from .stats import Failures, SignallingStats
from .store import Store
from .tokens import TokenBook

log = structlog.get_logger(__name__)

WILDCARD_HOSTS = ("", "0.0.0.0", "::")
SHUTDOWN_TIMEOUT_S = 2.0  # connections still open after everyone was disconnected


def _ice_server(value: IceServer | dict[str, Any]) -> IceServer:
    return value if isinstance(value, IceServer) else IceServer.from_payload(value)


def ice_summary(servers: Iterable[IceServer]) -> list[str]:
    """ICE servers for a log line: URLs and user names, never the credential."""
    out = []
    for s in servers:
        urls = s.urls if isinstance(s.urls, str) else ",".join(s.urls)
        out.append(f"{urls} (user {s.username}, credential ***)" if s.username else urls)
    return out


class RoomServer:
    """One room server. ``port=0`` picks a free port (read ``port``/``url`` after ``start``).

    ``reconnect_grace_s``: how long a participant whose socket dropped without ``drop`` is
    kept for a rejoin (0 removes it at once). ``bandwidth``: the detector's thresholds.
    Serves the REST API and the metrics as a :class:`~.api.RoomApi`.
    """

    def __init__(
        self,
        app_id: str,
        app_key: str,
        host: str = "127.0.0.1",
        port: int = 8080,
        ice_servers: Iterable[IceServer | dict[str, Any]] = (),
        max_talkers: int = 6,
        *,
        data_dir: str | Path | None = None,
        reconnect_grace_s: float = RECONNECT_GRACE_S,
        bandwidth: BandwidthSettings | None = None,
        token_lifetime_s: int = 15 * 60,
        tap_encoded: bool = True,
        lean_intake: bool = True,
        clock: Callable[[], float] = time.time,
        minute_s: float = 60.0,
    ) -> None:
        if not app_id or not app_key:
            raise ValueError("RoomServer needs an app_id and an app_key")
        if reconnect_grace_s < 0:
            raise ValueError("reconnect_grace_s must be >= 0")
        self.app_id = app_id
        self.app_key = app_key
        self.host = host
        self.port = port
        self.ice_servers = tuple(_ice_server(s) for s in ice_servers)
        self.max_talkers = max_talkers
        self.store = Store(data_dir)
        self.rooms = RoomRegistry(max_talkers, self.store)
        self.tokens = TokenBook(app_key, clock=clock, lifetime_s=token_lifetime_s, store=self.store)
        self.media = MediaServer(tap_encoded=tap_encoded, lean_intake=lean_intake, bandwidth=bandwidth)
        self.failures = Failures()
        """Unexpected exceptions survived, by where (``enx_server_failures_total``);
        ``failures.add_hook(fn)`` calls ``fn(where, error)`` for each."""
        self.signalling = Signalling(
            rooms=self.rooms,
            tokens=self.tokens,
            media=self.media,
            ice_servers=self.ice_servers,
            max_talkers=max_talkers,
            reconnect_grace_s=reconnect_grace_s,
            failures=self.failures,
            minute_s=minute_s,  # how long a minute of settings.duration lasts (tests shorten it)
        )
        self.registry = server_registry(self)
        """This server's Prometheus metrics (``enx_server_*``; see :mod:`.metrics`), also at
        ``GET /metrics``: the embedded agent merges it into its own exposition."""
        self._runner: web.AppRunner | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://{self.reachable_host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + API_PREFIX

    @property
    def reachable_host(self) -> str:
        """Where a local client connects (a wildcard bind is reached on loopback)."""
        host = "127.0.0.1" if self.host in WILDCARD_HOSTS else self.host
        return f"[{host}]" if ":" in host else host

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("RoomServer already started")
        if self._closed:
            raise RuntimeError("RoomServer is closed")
        self.loop = asyncio.get_running_loop()  # its tasks are counted on /metrics
        app = make_app(self)
        add_room_control_routes(app, self.signalling)  # the emulator's waiting room and room end
        self.signalling.attach(app)
        runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        await runner.setup()
        self._runner = runner
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await self.aclose()
            raise
        self.port = int(runner.addresses[0][1])
        self.signalling.start()

    async def aclose(self) -> None:
        """Disconnect everyone, close all peer connections, stop serving (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.signalling.aclose()
            await self.media.aclose()
        finally:
            try:
                if self._runner is not None:
                    await self._runner.cleanup()
                    self._runner = None
            finally:
                self.store.close()

    async def __aenter__(self) -> RoomServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ in-process API

    @property
    def stats(self) -> SignallingStats:
        return self.signalling.stats

    def media_counts(self) -> MediaCounts:
        packets, octets = self.media.forwarded.packets, self.media.forwarded.bytes
        return MediaCounts(forwarded_legs=self.media.connected_legs()[1], packets=packets, bytes=octets)

    def create_room(
        self, name: str, settings: dict[str, Any] | None = None, owner_ref: str = ""
    ) -> dict[str, Any]:
        """Create a room; returns the REST room dict (``room["room_id"]``)."""
        room = self.rooms.create(name, settings, owner_ref)
        log.info("room_created", room=room.room_id, name=room.name)
        return room.to_rest()

    async def delete_room(self, room_id: str) -> None:
        room = self.rooms.get(room_id)
        await self.signalling.close_room(room)
        self.rooms.delete(room_id)
        log.info("room_deleted", room=room_id)

    def mint_token(
        self,
        room_id: str,
        name: str,
        role: str = "participant",
        user_ref: str = "",
        *,
        data: dict[str, Any] | None = None,
        host: str | None = None,
    ) -> str:
        """A token for ``room_id``; ``host`` defaults to this server's own address."""
        room = self.rooms.get(room_id)
        if not isinstance(name, str) or not name:
            raise BadRequest("a token needs a participant name")
        check_role(role)
        token = self.tokens.mint(
            host=host or f"{self.reachable_host}:{self.port}",
            room_id=room_id,
            name=name,
            role=role,
            user_ref=user_ref,
            quality=room.quality,
            data=data,
        )
        log.info("token_issued", room=room_id, name=name, role=role, token=redact(token))
        return token

    async def drop_connection(self, room_id: str, client_id: str) -> None:
        """Cut a participant's socket as a network fault would (``POST .../drop``)."""
        await self.signalling.drop_connection(room_id, client_id)

    async def drop_participant(self, room_id: str, client_id: str) -> None:
        """End a participant's session as a moderator would (``DELETE .../participants/{id}``):
        it hears ``room-disconnected`` 2001 and does not rejoin."""
        await self.signalling.drop_participant(room_id, client_id)

    async def hard_mute(
        self, room_id: str, muted: bool, *, client_id: str | None = None, kind: MediaKind = "audio"
    ) -> dict[str, Any]:
        """As a moderator's hard mute: the room's audio (no ``client_id``) or one participant's
        ``kind`` (``POST /emulator/rooms/{id}/hard-mute``). RequestRefused when already so."""
        moderation, room = self.signalling.moderation, self.rooms.get(room_id)
        if client_id is None:
            return await moderation.mute_room(room, muted)
        return await moderation.mute_user(room, client_id, kind, muted)

    async def set_recording(self, room_id: str, on: bool) -> dict[str, Any]:
        """As a moderator's startRecord / stopRecord (``POST /emulator/rooms/{id}/recording``)."""
        return await self.signalling.moderation.record(self.rooms.get(room_id), on)

    async def inject_bandwidth(
        self, room_id: str, client_ids: list[str], *, kbps: float | None = None, restored: bool = False
    ) -> None:
        """Send the detector's alert (or restore) for these clients (``POST .../bandwidth``)."""
        await self.signalling.inject_bandwidth(room_id, client_ids, kbps=kbps, restored=restored)

    def room_view(self, room_id: str) -> dict[str, Any]:
        """What the server holds and received for a room (``GET /emulator/rooms/{id}``)."""
        room = self.rooms.get(room_id)
        participants = []
        for p in room.participants.values():
            streams = [
                {
                    "id": s.id,
                    "audio": s.audio,
                    "video": s.video,
                    "state": s.state,
                    "stale": s.id in p.stale_streams,
                    "received": self.media.received(room_id, s.id),
                    **self.media.forwarding_view(room_id, s.id),
                    "bandwidth": self.media.bandwidth_view(room_id, s.id),
                }
                for s in room.streams.values()
                if s.client_id == p.client_id
            ]
            subscriptions = [
                {"streamId": leg.stream_id, "state": leg.state, "forwarded": leg.forwarded_json()}
                for leg in self.media.subscriptions(room_id, p.client_id)
            ]
            participants.append(
                {
                    "clientId": p.client_id,
                    "name": p.name,
                    "role": p.role,
                    "connected": not p.away,
                    "activeTalkers": self.signalling.talkers.view(room_id, p.client_id),
                    "streams": streams,
                    "subscriptions": subscriptions,
                }
            )
        return {
            "result": 0,
            "room_id": room.room_id,
            "name": room.name,
            "participants": participants,
            # the waiting room (knock / wait_for_moderator): accepted tokens not let in yet
            "awaited": [
                w.participant.user_info().to_payload() for w in self.signalling.waiting_room.waiting(room)
            ],
        }


async def serve(
    host: str,
    port: int,
    app_id: str,
    app_key: str,
    create_room: str | None = None,
    *,
    data_dir: str | Path | None = None,
    ice_servers: Iterable[IceServer | dict[str, Any]] = (),
    reconnect_grace_s: float = RECONNECT_GRACE_S,
    bandwidth: BandwidthSettings | None = None,
    lean_intake: bool = True,
) -> None:
    """Run a room server until cancelled (``enx-bot serve``); ``create_room`` names a room
    to create at start."""
    async with RoomServer(
        app_id=app_id,
        app_key=app_key,
        host=host,
        port=port,
        ice_servers=ice_servers,
        data_dir=data_dir,
        reconnect_grace_s=reconnect_grace_s,
        bandwidth=bandwidth,
        lean_intake=lean_intake,
    ) as server:
        room_id = server.create_room(name=create_room)["room_id"] if create_room else None
        log.info(
            "server_started",
            url=server.url,
            api_url=server.api_url,
            room_id=room_id,
            data=str(server.store.path) if server.store.path else "memory",
            rooms=len(server.rooms),
            ice_servers=ice_summary(server.ice_servers),
            reconnect_grace_s=reconnect_grace_s,
            bandwidth_detector=server.media.bandwidth.enabled,
        )
        try:
            await asyncio.Event().wait()
        finally:
            log.info("server_stopping", url=server.url)
