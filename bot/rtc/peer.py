"""The media legs' old address: they live in :mod:`bot.rtc.legs` now (on ``bot.webrtc``).

Kept so that ``from .peer import ...`` in the rest of the SDK goes on working while it moves to
``from .legs import ...``.
"""

from .legs import (
    FLOOR_BITRATE_BPS,
    IceEndpoint,
    IcePair,
    PublishLeg,
    ReceiveCounters,
    SubscribeLeg,
    has_any_candidate,
    has_relay_candidate,
    local_path_gone,
)

__all__ = [
    "FLOOR_BITRATE_BPS",
    "IceEndpoint",
    "IcePair",
    "PublishLeg",
    "ReceiveCounters",
    "SubscribeLeg",
    "has_any_candidate",
    "has_relay_candidate",
    "local_path_gone",
]
