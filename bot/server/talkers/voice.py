"""Who is speaking: a per-packet tally on each publish leg's audio, read once a tick.

The RTP audio-level header extension (RFC 6464, ``urn:ietf:params:rtp-hdrext:ssrc-audio-level``)
is used where it arrives: aiortc negotiates it and fills it in when it encodes (browsers always
do); its level is -dBov, 0 the loudest, 127 silence. Without it (pre-encoded packets sent as
they are, or the lean intake, which reads only the fixed header) the payload size decides:
Opus encodes silence in a few bytes (3 with aiortc's encoder; DTX sends even less), speech and
a tone in dozens to hundreds. Per packet this is one comparison and two additions.
"""

from __future__ import annotations

LOUD_LEVEL = 50
"""An audio level at or below this (-50 dBov or louder) is voice."""
LOUD_BYTES = 40
"""Without a level, an Opus payload this large or larger is voice."""
SPEAKING_SHARE = 0.3
"""A tick is spoken in when at least this share of its packets is voice..."""
MIN_PACKETS = 3
"""...and it carried at least this many packets."""


class VoiceActivity:
    """One publish leg's audio: fed every packet (any path), taken every tick."""

    __slots__ = ("leveled", "loud", "packets")

    def __init__(self) -> None:
        self.loud = 0
        self.packets = 0
        self.leveled = 0
        """Packets judged by their audio level so far (the others by their size)."""

    def on_packet(self, size: int, level: tuple[bool, int] | None = None) -> None:
        self.packets += 1
        if level is None:
            if size >= LOUD_BYTES:
                self.loud += 1
        else:
            self.leveled += 1
            if level[1] <= LOUD_LEVEL:
                self.loud += 1

    def on_rtp(self, ssrc: int, seq: int, ts: int, arrival_ms: float, size: int) -> None:
        """The meters' signature (the lean intake's ``on_rtp``): no level there."""
        self.on_packet(size)

    def take(self) -> bool:
        """Whether the tick now ending was spoken in; starts the next one."""
        speaking = self.packets >= MIN_PACKETS and self.loud >= SPEAKING_SHARE * self.packets
        self.loud = self.packets = 0
        return speaking
