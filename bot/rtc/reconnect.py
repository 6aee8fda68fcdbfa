"""Reconnection policy (PROTOCOL.md section 8, mobile SDK semantics) and the network check
made before each rejoin attempt.

The sequence itself lives in :class:`~bot.rtc.enxrtc.EnxRtc` (it re-runs the join); here are
the numbers and the waiting:

- ``number_of_attempts`` rejoin attempts at most (each fires ``on_reconnect``); all failed:
  give up with 1165.
- ``timeout_interval`` seconds, counted from the loss, for the whole of it; past it: 1166.
- Attempts are spaced 1 s, 2 s, 4 s, 4 s ... apart (never past the budget); one attempt gets at
  most :data:`ATTEMPT_TIMEOUT_S` (socket, token, room-connected, re-publish to ``ready``).
- Before each attempt, wait for the network: the route to the signalling host must exist, and
  when the room gave an ``internetDetectionUrl``, it must answer a ``HEAD ?rand=N`` (any HTTP
  status, even a refused connection, counts: only silence or no route means no network).
  Waiting uses the budget, not attempts, so a link down for a few seconds costs no attempt.
- A token refusal (41xx, e.g. 4119) ends it at once with 1178: retrying cannot help.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import random
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.proto import ErrorCode

from .options import RoomInfo

ATTEMPT_TIMEOUT_S = 10.0
BACKOFF_FIRST_S = 1.0
BACKOFF_CAP_S = 4.0
NETWORK_POLL_S = 0.25
PROBE_TIMEOUT_S = 2.0
PROBE_FIRST_TIMEOUT_S = 0.4
REFUSAL_CODES = range(4100, 4120)
"""Token-handshake refusals: the server will not take this token back (expired, reused,
room gone, rejoin refused)."""


@dataclass(frozen=True, kw_only=True)
class ReconnectPolicy:
    """How hard to try, read from ``room_info``."""

    attempts: int
    budget_s: float
    attempt_timeout_s: float = ATTEMPT_TIMEOUT_S

    @classmethod
    def from_room_info(cls, info: RoomInfo) -> ReconnectPolicy:
        return cls(attempts=info.number_of_attempts, budget_s=info.timeout_interval)

    def delay_before(self, attempt: int) -> float:
        """The pause before attempt number ``attempt`` (1-based; none before the first)."""
        if attempt <= 1:
            return 0.0
        return float(min(BACKOFF_FIRST_S * 2 ** (attempt - 2), BACKOFF_CAP_S))


class GiveUp(Exception):
    """Reconnection is over: ``payload`` is what ``on_room_disconnected`` receives."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(f"{code}: {msg}")
        self.payload = {"cause": int(code), "msg": msg}


def exhausted(attempts: int, last_error: str) -> GiveUp:
    return GiveUp(
        ErrorCode.RECONNECT_ATTEMPTS_EXHAUSTED,
        f"reconnect attempts exhausted ({attempts} of {attempts}); last: {last_error}",
    )


def timed_out(budget_s: float, last_error: str) -> GiveUp:
    return GiveUp(
        ErrorCode.RECONNECT_TIMED_OUT,
        f"reconnect timed out after {budget_s:g} s (room_info timeout_interval); last: {last_error}",
    )


def refused(code: int, msg: str) -> GiveUp:
    return GiveUp(ErrorCode.RECONNECT_REFUSED, f"reconnect refused by the room server ({code}: {msg})")


def route_problem(host: str) -> str | None:
    """Why there is no route to ``host`` (an IP literal; names are not resolved here: that
    would block), or None. A UDP ``connect`` consults the routing table and sends nothing."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((str(address), 9))
    except OSError as exc:
        return f"no route to {address} ({exc.strerror or exc})"
    return None


ANSWERED_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ECONNRESET})
"""A refused or reset connection came from the host: the network works (the emulator serves
its ``internetDetectionUrl`` itself, so a server that is down refuses it)."""


async def probe(session: aiohttp.ClientSession, url: str, within: float = PROBE_TIMEOUT_S) -> str | None:
    """``HEAD url?rand=N`` as the official client does; None if the network answered (any
    HTTP status, or a refused connection), else why not (timeout, no route, DNS)."""
    sep = "&" if urlsplit(url).query else "?"
    target = f"{url}{sep}rand={random.randrange(10**9)}"
    try:
        async with session.head(target, timeout=aiohttp.ClientTimeout(total=within)):
            return None
    except aiohttp.ClientConnectorError as exc:
        if exc.os_error.errno in ANSWERED_ERRNOS:
            return None
        return f"{url} did not answer ({exc.os_error.strerror or exc})"
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return f"{url} did not answer ({type(exc).__name__}: {exc or 'timeout'})"


async def wait_for_network(host: str, detection_url: str | None, deadline: float, log: Any) -> None:
    """Return once the network looks usable (see the module docstring); raise TimeoutError
    with the last problem when ``deadline`` (``time.monotonic()``) passes first."""
    hostname = urlsplit(f"//{host}").hostname or host
    session: aiohttp.ClientSession | None = None
    logged = False
    probes = 0
    try:
        while True:
            problem = route_problem(hostname)
            if problem is None and detection_url:
                if session is None:
                    session = aiohttp.ClientSession()
                # short first: a link that just came back may drop the first SYN, and a fresh
                # try beats the kernel's 1 s retransmission; longer later for slow networks
                within = min(PROBE_TIMEOUT_S, PROBE_FIRST_TIMEOUT_S * 2**probes, deadline - time.monotonic())
                probes += 1
                problem = await probe(session, detection_url, max(0.1, within))
            if problem is None:
                return
            if not logged:
                log.debug("waiting_for_network", problem=problem)
                logged = True
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(problem)
            await asyncio.sleep(min(NETWORK_POLL_S, left))
    finally:
        if session is not None:
            await session.close()
