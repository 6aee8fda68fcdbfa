"""The EnxRtc client SDK: EnableX's Flutter ``EnxRtc`` API for a headless Python participant.

Layering: imports ``bot.proto``, ``bot.webrtc`` and ``bot.media`` from their faces (and aiortc,
python-socketio, aiohttp, structlog). See docs/INTERFACES.md for the contract.
"""

from . import devices
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
    "devices",
]
"""``devices`` is a namespace: the audio output names (``devices.NONE``, ``devices.FILE``) and
the ``AudioOutput`` protocol a sink factory implements."""
