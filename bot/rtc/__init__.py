"""The EnxRtc client SDK: EnableX's Flutter ``EnxRtc`` API for a headless Python participant.

Layering: imports ``bot.proto`` (and aiortc, python-socketio, aiohttp, structlog), nothing else
of ours. See docs/INTERFACES.md for the contract.
"""

from .callbacks import CALLBACK_NAMES, Callback, CallbackName
from .enxrtc import EnxRtc
from .errors import MediaError, RoomError, SignallingError
from .options import LocalInfo, RoomInfo

__all__ = [
    "CALLBACK_NAMES",
    "Callback",
    "CallbackName",
    "EnxRtc",
    "LocalInfo",
    "MediaError",
    "RoomError",
    "RoomInfo",
    "SignallingError",
]
