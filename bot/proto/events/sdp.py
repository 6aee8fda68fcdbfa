"""``signaling_message`` payloads: offer, answer, candidates, the end marker, ``ready``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .._fields import Fields
from .common import Json


@dataclass(frozen=True, kw_only=True)
class Offer:
    type: ClassVar[str] = "offer"
    sdp: str


@dataclass(frozen=True, kw_only=True)
class Answer:
    """The server's answer. ``media`` lists codecs per kind: the official client needs it."""

    type: ClassVar[str] = "answer"
    sdp: str
    media: list[Json] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """A trickled candidate; ``candidate`` keeps the ``a=`` prefix the official client sends."""

    type: ClassVar[str] = "candidate"
    sdp_mline_index: int
    sdp_mid: str
    candidate: str


@dataclass(frozen=True, kw_only=True)
class EndOfCandidates:
    type: ClassVar[str] = "candidate"


@dataclass(frozen=True, kw_only=True)
class Ready:
    type: ClassVar[str] = "ready"


@dataclass(frozen=True, kw_only=True)
class OtherMessage:
    """Any other ``msg.type``: the official client ignores these, and so do we."""

    type: str
    raw: Json = field(default_factory=dict)


SdpMessage = Offer | Answer | Candidate | EndOfCandidates | Ready | OtherMessage

END_MARKER: Json = {"sdpMLineIndex": -1, "sdpMid": "end", "candidate": "end"}


def sdp_message_from_payload(payload: object, where: str) -> SdpMessage:
    f = Fields(payload, where)
    kind = f.text("type")
    if kind == "offer":
        return Offer(sdp=f.text("sdp"))
    if kind == "answer":
        return Answer(sdp=f.text("sdp"), media=f.array("media", []))
    if kind == "candidate":
        c = Fields(f.mapping("candidate"), f"{where}.candidate")
        if c.payload.get("candidate") == "end" or c.payload.get("sdpMLineIndex") == -1:
            return EndOfCandidates()
        return Candidate(
            sdp_mline_index=c.integer("sdpMLineIndex", 0),
            sdp_mid=str(c.payload.get("sdpMid", "0")),
            candidate=c.text("candidate"),
        )
    if kind == "ready":
        return Ready()
    return OtherMessage(type=kind, raw=dict(f.payload))


def sdp_message_to_payload(msg: SdpMessage) -> Json:
    if isinstance(msg, Offer):
        return {"type": "offer", "sdp": msg.sdp}
    if isinstance(msg, Answer):
        return {"type": "answer", "sdp": msg.sdp, "media": list(msg.media)}
    if isinstance(msg, Candidate):
        return {
            "type": "candidate",
            "candidate": {
                "sdpMLineIndex": msg.sdp_mline_index,
                "sdpMid": msg.sdp_mid,
                "candidate": msg.candidate,
            },
        }
    if isinstance(msg, EndOfCandidates):
        return {"type": "candidate", "candidate": dict(END_MARKER)}
    if isinstance(msg, Ready):
        return {"type": "ready"}
    return {**msg.raw, "type": msg.type}
