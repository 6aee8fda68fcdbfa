"""The server's forwarders: a publish leg's encoded frames to its subscribe legs, undecoded
(:class:`PacketForwarder`), or decoded and re-encoded (:class:`DecodingForwarder`, the fallback).

For the server's own receivers only (per-instance replacements before the receiver starts; no
class is patched, so the bots in the same process keep aiortc's behaviour), :func:`_forward_from`
wraps the jitter buffer so that each complete frame (a VP8 frame, an Opus packet) goes to the
leg's :class:`PacketForwarder`, and puts ``bot.webrtc``'s receive tap in place of the decoder
queue, so aiortc's decoder thread ends as it starts and anything that would be decoded is
counted. See :mod:`.media` for the whole picture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from aiortc import (
    RTCRtpReceiver,
)
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from bot.webrtc import keyframes, receive_tap, rtcp_taps

from .forwarding import Forwarded, ForwardedStream

log = structlog.get_logger("bot.server.media")

MediaKind = Literal["audio", "video"]
KINDS: tuple[MediaKind, ...] = ("audio", "video")
CLOCK_RATES = {"audio": 48000, "video": 90000}


@dataclass(kw_only=True)
class Received:
    """What the server received for one kind of one stream."""

    packets: int = 0
    bytes: int = 0  # RTP payload bytes
    frames: int = 0  # complete encoded frames (decoded frames on the fallback path)

    def to_json(self) -> dict[str, int]:
        return {"packets": self.packets, "bytes": self.bytes, "frames": self.frames}


# --------------------------------------------------------------------------- receive taps


def _tappable(receiver: RTCRtpReceiver) -> bool:
    """Whether this aiortc's receiver has the internals :func:`_forward_from` replaces."""
    return (
        callable(getattr(receive_tap.jitter_buffer(receiver), "add", None))
        and receive_tap.probe(receiver)
        and keyframes.pli_sender(receiver) is not None
        and rtcp_taps.rtp_handler(receiver) is not None
    )


class _FrameTap:
    """Stands in for one receiver's jitter buffer: every encoded frame the buffer completes
    goes to ``sink`` (bytes, RTP timestamp) instead of back to the receiver, which then has
    nothing to decode. Remembers the sender's SSRC (the target of a PLI)."""

    def __init__(self, inner: Any, received: Received, sink: Callable[[bytes, int], None]) -> None:
        self._inner = inner
        self._received = received
        self._sink = sink
        self.ssrc: int | None = None

    def add(self, packet: Any) -> tuple[bool, None]:
        pli, frame = self._inner.add(packet)
        self.ssrc = packet.ssrc
        if frame is not None:
            self._received.frames += 1
            self._sink(frame.data, frame.timestamp)
        return pli, None

    def restart(self) -> None:
        """Start over with an empty buffer of the same shape (after a lean run: the packets
        that went past it must not read as a gap)."""
        self._inner = receive_tap.fresh_jitter_buffer(self._inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _DecoderQueueProbe:
    """Hears what reaches a forwarding receiver's decoder queue (the receive tap stands in for
    it, so aiortc's decoder thread ends as it starts): counts what would be decoded. Nothing
    should ever arrive (the jitter-buffer tap keeps the frames); the room view shows the count."""

    def __init__(self) -> None:
        self.frames = 0

    def __call__(self, codec: Any, frame: Any) -> None:
        self.frames += 1


def _forward_from(
    receiver: RTCRtpReceiver, received: Received, sink: Callable[[bytes, int], None]
) -> tuple[_FrameTap, _DecoderQueueProbe]:
    """Make this one receiver hand its encoded frames to ``sink`` and never decode.

    Two attributes of this instance are replaced before it starts (no class is touched): the
    jitter buffer (a :class:`_FrameTap` around it, so frames keep the publisher's RTP
    timestamps and never reach the decoder queue) and the decoder queue (the shared receive
    tap, ``bot.webrtc.receive_tap``: aiortc's decoder thread ends as soon as it
    starts). Everything else (``receive``, RTCP reports, NACKs, PLIs on loss, REMB) stays
    aiortc's.
    """
    tap = _FrameTap(receive_tap.jitter_buffer(receiver), received, sink)
    receive_tap.set_jitter_buffer(receiver, tap)
    probe = _DecoderQueueProbe()
    receive_tap.install(receiver, probe)
    return tap, probe


# --------------------------------------------------------------------------- forwarders


def _discard(data: bytes, timestamp: int) -> None:
    pass


def _never() -> bool:
    return False


ForwardMode = Literal["packets", "decoded"]


class PacketForwarder:
    """Forwards a publish leg's encoded frames to its subscribe legs (see the module docstring).

    ``attach(kind)`` returns a track for a subscribe leg's sender; ``detach(track)`` gives it
    back. ``request_keyframe(kind)`` is a subscriber's PLI/FIR.
    """

    mode: ForwardMode = "packets"

    def __init__(self, on_forward: Callable[[int], None] | None = None) -> None:
        self.streams: dict[str, ForwardedStream] = {}
        self._on_forward = on_forward
        self._probes: list[_DecoderQueueProbe] = []

    def add_source(
        self, kind: MediaKind, receiver: RTCRtpReceiver, received: Received, request: Callable[[int], None]
    ) -> tuple[_FrameTap, Callable[[], bool]]:
        """Tap ``receiver`` (before it starts); ``request(ssrc)`` sends the publisher a PLI.
        Returns the tap and whether that receiver's frames have a subscriber now."""
        if kind in self.streams:  # a second m-line of a kind: counted, never forwarded nor decoded
            tap, probe = _forward_from(receiver, received, _discard)
            self._probes.append(probe)
            return tap, _never
        taps: list[_FrameTap] = []

        def ask() -> None:
            if taps and taps[0].ssrc is not None:
                request(taps[0].ssrc)

        stream = ForwardedStream(kind, request=ask, on_forward=self._on_forward)
        tap, probe = _forward_from(receiver, received, stream.push)
        taps.append(tap)
        self._probes.append(probe)
        self.streams[kind] = stream
        return taps[0], lambda: stream.subscribers > 0

    def attach(self, kind: str) -> MediaStreamTrack | None:
        stream = self.streams.get(kind)
        return None if stream is None else stream.track()

    def detach(self, track: MediaStreamTrack) -> None:
        track.stop()

    def request_keyframe(self, kind: str) -> None:
        stream = self.streams.get(kind)
        if stream is not None:
            stream.request_keyframe()

    def subscribers(self, kind: str) -> int:
        stream = self.streams.get(kind)
        return 0 if stream is None else stream.subscribers

    @property
    def decoded_frames(self) -> int:
        """Frames that reached a decoder queue of the tapped receivers (0: nothing decoded)."""
        return sum(p.frames for p in self._probes)

    def forwarded_json(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {k: Forwarded().to_json() for k in KINDS}
        for kind, stream in self.streams.items():
            out[kind] = stream.forwarded.to_json()
        return out

    def close(self) -> None:
        for stream in self.streams.values():
            stream.close()


class _DecodedTrack(MediaStreamTrack):
    """The fallback's view of one published track for one subscribe leg (re-encoded by the
    leg's sender). Counts the frames it hands over (``forwarded``; ``shared``: the stream's)."""

    def __init__(self, kind: str, proxy: MediaStreamTrack, shared: Forwarded) -> None:
        super().__init__()
        self.kind = kind
        self.forwarded = Forwarded()
        self._shared = shared
        self._proxy = proxy

    async def recv(self) -> Any:
        frame = await self._proxy.recv()
        self.forwarded.packets += 1
        self._shared.packets += 1
        return frame

    def stop(self) -> None:
        super().stop()
        self._proxy.stop()


class DecodingForwarder:
    """The fallback, when the receivers cannot be tapped (``tap_encoded=False``, or an aiortc
    whose internals differ): aiortc decodes every received frame, a ``MediaRelay`` shares the
    decoded track, and each subscribe leg's sender re-encodes it (VP8/Opus; its own encoder
    answers PLIs). Counts decoded frames; forwarded bytes are not measured (0)."""

    mode: ForwardMode = "decoded"

    def __init__(self) -> None:
        self._relay = MediaRelay()
        self._sources: dict[str, MediaStreamTrack] = {}
        self._forwarded: dict[str, Forwarded] = {k: Forwarded() for k in KINDS}
        self._attached: set[_DecodedTrack] = set()
        self.decoded_frames = 0

    def add_source(self, kind: str, track: MediaStreamTrack) -> None:
        self._sources[kind] = track

    def counting_proxy(self, kind: str) -> MediaStreamTrack | None:
        source = self._sources.get(kind)
        return None if source is None else self._relay.subscribe(source, buffered=False)

    def attach(self, kind: str) -> MediaStreamTrack | None:
        source = self._sources.get(kind)
        if source is None:
            return None
        track = _DecodedTrack(kind, self._relay.subscribe(source, buffered=False), self._forwarded[kind])
        self._attached.add(track)
        return track

    def detach(self, track: MediaStreamTrack) -> None:
        if isinstance(track, _DecodedTrack) and track in self._attached:
            self._attached.discard(track)
            track.stop()

    def request_keyframe(self, kind: str) -> None:
        """Nothing to do: each subscribe leg's own encoder honours its PLIs."""

    def subscribers(self, kind: str) -> int:
        return sum(1 for t in self._attached if t.kind == kind)

    def forwarded_json(self) -> dict[str, dict[str, int]]:
        return {k: f.to_json() for k, f in self._forwarded.items()}

    def close(self) -> None:
        for track in list(self._attached):
            self.detach(track)
