"""The Socket.IO side of the SDK: one connection, requests with acks, one ordered event stream.

An adapter between python-socketio and ``bot.proto``: what leaves is an encoded proto event,
what arrives is decoded with ``decode_server`` and handed, in arrival order, to one sink (the
room's dispatcher queue). Socket.IO's own reconnection is off: the SDK rejoins itself
(PROTOCOL.md sections 2 and 8).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import socketio  # type: ignore[import-untyped]
import structlog

from bot.proto import (
    Ack,
    ClientEvent,
    ErrorCode,
    ProtocolError,
    ServerEvent,
    TokenEnvelope,
    decode_server,
    encode,
)

from .errors import SignallingError

SOCKETIO_PATH = "/v3/socket.io"
REQUEST_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 1.0
"""A socket on a dead network never answers the WebSocket close: stop waiting after this."""

_log = structlog.get_logger(__name__)

# Loggers of our own for python-socketio/engineio: given True/False they attach a stderr handler
# of their own. Under ``bot`` (NullHandler: silent in a library) and at ERROR, as theirs would be:
# their WARNINGs are chatter about a normal close ("Server sent close packet ..., aborting").
WIRE_LOGGERS = (logging.getLogger("bot.rtc.wire.socketio"), logging.getLogger("bot.rtc.wire.engineio"))
for _logger in WIRE_LOGGERS:
    _logger.setLevel(logging.ERROR)


@dataclass(frozen=True, kw_only=True)
class SocketClosed:
    """The connection ended without us asking: the last item the sink ever receives."""

    reason: str


Inbound = ServerEvent | SocketClosed


def signalling_url(envelope: TokenEnvelope) -> str:
    """Where to connect: ``host`` (https when ``secure``), or the gateway with
    ``X-Forwarded-Host=<host>`` (PROTOCOL.md section 1)."""
    url = envelope.signalling_url
    if envelope.gateway:
        sep = "&" if urlsplit(url).query else "?"
        url = f"{url}{sep}X-Forwarded-Host={quote(envelope.host, safe='')}"
    return url


class Signalling:
    """One Socket.IO connection to the room's signalling server.

    ``sink`` receives every server event, then a final :class:`SocketClosed` if the connection
    ends without :meth:`aclose`; it is called in arrival order and must not block.
    """

    def __init__(
        self,
        url: str,
        *,
        host: str,
        sink: Callable[[Inbound], None],
        request_timeout: float = REQUEST_TIMEOUT_S,
        log: Any = None,
    ) -> None:
        self.url = url
        self.host = host
        self._sink = sink
        self._request_timeout = request_timeout
        self._log = log if log is not None else _log
        self._http: aiohttp.ClientSession | None = None
        self._sio: Any = None
        self._pending: set[asyncio.Future[tuple[Any, ...]]] = set()
        self._closing = False
        self._closed_reported = False

    @property
    def connected(self) -> bool:
        return self._sio is not None and bool(self._sio.connected) and not self._closing

    async def connect(self, within: float = CONNECT_TIMEOUT_S) -> None:
        """Open the WebSocket and the Socket.IO namespace; SignallingError (1161) naming the
        host if that fails or takes longer than ``within`` seconds."""
        self._http = aiohttp.ClientSession()
        sio = socketio.AsyncClient(
            reconnection=False,
            handle_sigint=False,
            http_session=self._http,
            request_timeout=within,
            logger=WIRE_LOGGERS[0],
            engineio_logger=WIRE_LOGGERS[1],
        )
        sio.on("*", self._on_event)
        sio.on("disconnect", self._on_disconnect)
        self._sio = sio
        try:
            async with asyncio.timeout(within):
                await sio.connect(
                    self.url,
                    transports=["websocket"],
                    socketio_path=SOCKETIO_PATH,
                    wait_timeout=within,
                )
        except TimeoutError:
            await self.aclose()
            raise SignallingError(
                f"signalling server {self.host} did not answer within {within:g} s ({self.url})"
            ) from None
        except (socketio.exceptions.ConnectionError, aiohttp.ClientError, OSError) as exc:
            await self.aclose()
            raise SignallingError(
                f"cannot reach signalling server {self.host} ({self.url}): {exc or 'refused'}"
            ) from None
        except BaseException:  # cancelled: still release the socket and the HTTP session
            await self.aclose()
            raise
        self._log.debug("signalling_connected", url=self.url)

    async def request(self, event: ClientEvent, within: float | None = None) -> Ack:
        """Emit with an ack and wait for it. SignallingError on timeout or a closed socket;
        a refusal is returned as a non-ok Ack for the caller to judge."""
        name, args = encode(event)
        if not self.connected:
            raise SignallingError(
                f"'{name}' not sent: not connected to the room", ErrorCode.ROOM_NOT_CONNECTED
            )
        loop = asyncio.get_running_loop()
        ack: asyncio.Future[tuple[Any, ...]] = loop.create_future()

        def on_ack(*ack_args: Any) -> None:
            if not ack.done():
                ack.set_result(ack_args)

        self._pending.add(ack)
        try:
            try:
                await self._sio.emit(name, _emit_data(args), callback=on_ack)
            except socketio.exceptions.SocketIOError as exc:  # closed between check and emit
                raise SignallingError(f"'{name}' not sent: {exc}", ErrorCode.ROOM_NOT_CONNECTED) from None
            wait = self._request_timeout if within is None else within
            try:
                async with asyncio.timeout(wait):
                    ack_args = await ack
            except TimeoutError:
                raise SignallingError(f"no answer to '{name}' within {wait:g} s") from None
        finally:
            self._pending.discard(ack)
        try:
            return Ack.from_args(name, ack_args)
        except ProtocolError as exc:
            raise SignallingError(str(exc), exc.code) from None

    async def aclose(self, within: float = CLOSE_TIMEOUT_S) -> None:
        """Disconnect on purpose (no SocketClosed is reported); idempotent. Waits at most
        ``within`` seconds for the server to see the close, then drops the connection."""
        self._closing = True
        self._fail_pending("connection closed")
        sio, self._sio = self._sio, None
        if sio is not None:
            try:
                async with asyncio.timeout(within):
                    await sio.disconnect()
            except TimeoutError:
                self._log.debug("signalling_close_timeout", within=within)
            except Exception:  # the socket may already be gone: closing must still finish
                self._log.debug("signalling_close_failed", exc_info=True)
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    # ----------------------------------------------------------------- python-socketio hooks
    # Plain functions on purpose: engine.io runs each message in its own task, started in
    # arrival order; a handler that never awaits keeps that order into the sink.

    def _on_event(self, name: str, *args: Any) -> None:
        try:
            event = decode_server(name, args)
        except ProtocolError as exc:
            self._log.warning("malformed_event", event_name=name, error=str(exc))
            return
        self._sink(event)

    def _on_disconnect(self, reason: Any = None) -> None:
        self._fail_pending(f"connection lost ({reason})")
        if self._closing or self._closed_reported:
            return
        self._closed_reported = True
        self._log.debug("signalling_lost", reason=str(reason))
        # Messages received just before the close are still waiting in their own tasks:
        # report the close after them.
        asyncio.get_running_loop().call_soon(self._sink, SocketClosed(reason=str(reason)))

    def _fail_pending(self, why: str) -> None:
        for fut in list(self._pending):
            if not fut.done():
                fut.set_exception(SignallingError(why))
        self._pending.clear()


def _emit_data(args: tuple[Any, ...]) -> Any:
    """python-socketio expands a tuple into arguments and wraps anything else in one."""
    if len(args) == 1 and not isinstance(args[0], tuple):
        return args[0]
    return args if args else None
