"""Give closed peer connections' memory back.

An aiortc ``RTCPeerConnection`` is a web of reference cycles (transports, their protocols and
callbacks, event emitters): once closed it is freed by the cyclic garbage collector only, never
by reference counting. ``enx-bot`` tunes the collector for fewer full collections
(``bot.agent.swarm.tuning``: high thresholds, a frozen start-up heap), which keeps CPU down but
lets closed connections pile up: a soak of 50 bots rejoining every 1-3 minutes grew by about
12 MiB a minute, in the bots' process and in the room server's alike (BENCHMARKS.md, "Soak").

So every closed leg (the SDK's and the server's, :class:`~.leg.PeerLeg`) calls :func:`closed`,
and a full collection follows within ``RECLAIM_AFTER_S``, at most one per that period however
many legs closed: a churning swarm closes hundreds a minute and one collection frees them all.
The collection is small work (the frozen start-up heap is not scanned); its time is kept in
:data:`STATS` for the metrics.

A closed connection can still be held for a moment by its transports' last tasks (a DTLS or ICE
coroutine finishing on a loaded machine), so the collection can miss it; each closed connection
is watched by a weak reference, and while any survives a collection another one follows, up to
``RETRIES`` times (after that it is held by someone on purpose and counted as ``lingering``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import weakref
from dataclasses import dataclass

RECLAIM_AFTER_S = 10.0
RETRIES = 3


@dataclass
class ReclaimStats:
    closed: int = 0
    """Legs closed since the process started."""
    collections: int = 0
    freed: int = 0
    """Objects the collections found unreachable."""
    seconds: float = 0.0
    """Time spent in those collections."""
    retries: int = 0
    """Follow-up collections for connections that outlived one."""
    lingering: int = 0
    """Closed connections still alive after every retry (held on purpose, or a leak)."""


STATS = ReclaimStats()
_pending: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()  # a collection is due
_watched: weakref.WeakKeyDictionary[object, int] = weakref.WeakKeyDictionary()  # closed -> retries


def closed(pc: object | None = None) -> None:
    """A peer connection was closed: collect within ``RECLAIM_AFTER_S`` (once per period)."""
    STATS.closed += 1
    if pc is not None:
        with contextlib.suppress(TypeError):  # not weakly referenceable: collected, not watched
            _watched[pc] = 0
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    _schedule(loop)


def _schedule(loop: asyncio.AbstractEventLoop) -> None:
    if loop not in _pending:
        _pending.add(loop)
        loop.call_later(RECLAIM_AFTER_S, _collect, loop)


def _collect(loop: asyncio.AbstractEventLoop) -> None:
    _pending.discard(loop)
    started = time.perf_counter()
    STATS.freed += gc.collect()
    STATS.seconds += time.perf_counter() - started
    STATS.collections += 1
    again = False
    for pc, tries in list(_watched.items()):
        if tries >= RETRIES:
            del _watched[pc]
            STATS.lingering += 1
        else:
            _watched[pc] = tries + 1
            again = True
    if again and not loop.is_closed():
        STATS.retries += 1
        _schedule(loop)
