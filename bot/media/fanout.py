"""Old address of :mod:`bot.media.shared.fanout`, kept for one release: import from ``bot.media``."""

from .shared.fanout import (
    DEFAULT_QUEUE_SECONDS,
    Kind,
    Packet,
    PacketSink,
    PacketStream,
    PacketTrack,
    QueuedPacketTrack,
    Schedule,
)

__all__ = [
    "DEFAULT_QUEUE_SECONDS",
    "Kind",
    "Packet",
    "PacketSink",
    "PacketStream",
    "PacketTrack",
    "QueuedPacketTrack",
    "Schedule",
]
