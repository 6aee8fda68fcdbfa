"""The SDK's media legs on ``bot.webrtc``: one send-only publish leg, receive-only subscribe legs."""

from .base import IceEndpoint, IcePair, has_any_candidate, has_relay_candidate, local_path_gone
from .publish import FLOOR_BITRATE_BPS, PublishLeg
from .subscribe import ReceiveCounters, SubscribeLeg

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
