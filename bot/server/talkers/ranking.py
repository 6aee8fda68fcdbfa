"""The active-talker order of a room and each participant's list. Pure: no sockets, no time.

Order (EnableX: "the latest talker is moved up in the list", pinned users first):

1. pinned participants' streams, in the order they were pinned;
2. streams speaking now (voice within ``hangover_s``), the latest to start speaking first, so
   someone who chips in heads the list over a long talker without the two swapping every tick;
3. the others, who spoke most recently first;
4. those who never spoke, oldest stream first (join order).

A participant's list is that order without its own streams, cut to its talker count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]

VIDEO_ASPECT_RATIO = "16:9"
"""What EnableX's list carries for a camera stream (the server does not know the picture)."""


@dataclass
class Talker:
    """When one stream spoke."""

    spoke_at: float | None = None
    spell_start: float | None = None

    def observe(self, speaking: bool, now: float, hangover_s: float) -> None:
        if not speaking:
            return
        if self.spoke_at is None or now - self.spoke_at > hangover_s:
            self.spell_start = now
        self.spoke_at = now

    def speaking(self, now: float, hangover_s: float) -> bool:
        return self.spoke_at is not None and now - self.spoke_at <= hangover_s


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """A published stream as the ranking sees it."""

    stream_id: int
    client_id: str


@dataclass
class RoomTalkers:
    """One room's talkers, pins and what each participant was last sent."""

    hangover_s: float = 1.0
    talkers: dict[int, Talker] = field(default_factory=dict)
    pinned: list[str] = field(default_factory=list)
    """Client ids, in pin order."""
    counts: dict[str, int] = field(default_factory=dict)
    """Talker counts set by participants (``setTalkerCount``); the room's maximum otherwise."""
    sent: dict[tuple[str, str], list[Json]] = field(default_factory=dict)
    """(client id, socket id) -> the list it was last sent (a rejoin's new socket gets it again)."""
    sent_at: dict[tuple[str, str], float] = field(default_factory=dict)

    def observe(self, stream_id: int, speaking: bool, now: float) -> None:
        self.talkers.setdefault(stream_id, Talker()).observe(speaking, now, self.hangover_s)

    def forget_streams(self, keep: set[int]) -> None:
        for stream_id in [s for s in self.talkers if s not in keep]:
            del self.talkers[stream_id]

    def forget_clients(self, keep: set[str]) -> None:
        self.pinned = [c for c in self.pinned if c in keep]
        for client_id in [c for c in self.counts if c not in keep]:
            del self.counts[client_id]
        for key in [k for k in self.sent if k[0] not in keep]:
            self.sent.pop(key, None)
            self.sent_at.pop(key, None)

    def order(self, candidates: list[Candidate], now: float) -> list[Candidate]:
        pins = {client_id: i for i, client_id in enumerate(self.pinned)}
        never = float("inf")

        def key(c: Candidate) -> tuple[int, float, float, int]:
            if c.client_id in pins:
                return (0, float(pins[c.client_id]), 0.0, c.stream_id)
            t = self.talkers.get(c.stream_id)
            if t is not None and t.speaking(now, self.hangover_s) and t.spell_start is not None:
                return (1, -t.spell_start, 0.0, c.stream_id)
            if t is not None and t.spoke_at is not None:
                return (2, -t.spoke_at, 0.0, c.stream_id)
            return (3, never, 0.0, c.stream_id)

        return sorted(candidates, key=key)


def list_for(order: list[Candidate], client_id: str, count: int) -> list[Candidate]:
    """``client_id``'s list: the room's order without its own streams, at most ``count``."""
    if count <= 0:
        return []
    out: list[Candidate] = []
    for c in order:
        if c.client_id != client_id:
            out.append(c)
            if len(out) >= count:
                break
    return out


def entry(
    *,
    stream_id: int,
    client_id: str,
    name: str,
    audio: bool,
    video: bool,
    video_muted: bool,
    bw_low: bool,
    pinned: bool,
) -> Json:
    """One ``activeList`` entry as the official client reads it (golden trace lines 35, 54)."""
    showing = video and not video_muted
    mediatype = "audiovideo" if audio and showing else ("audio" if audio else "video")
    due_to_bw = bw_low and video_muted
    out: Json = {
        "streamId": stream_id,
        "clientId": client_id,
        "name": name,
        "mediatype": mediatype,
        "videoaspectratio": VIDEO_ASPECT_RATIO,
        "pinned": pinned,
        "videomuted": not showing,
        "reason": "bw" if due_to_bw else "user",
    }
    if due_to_bw:
        out["muteDueToBw"] = True
    return out
