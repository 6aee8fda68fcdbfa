"""The local room server: EnableX's REST API, Socket.IO signalling and WebRTC media legs.

Bots and tests join it like they would join EnableX; see docs/INTERFACES.md for the API.
"""

from .app import RoomServer, serve
from .bandwidth import BandwidthSettings
from .errors import (
    BadRequest,
    ClientNotFound,
    MediaError,
    NegotiationRefused,
    RequestRefused,
    RoomNotFound,
    ServerError,
)
from .store import Store, StoreError

__all__ = [
    "BadRequest",
    "BandwidthSettings",
    "ClientNotFound",
    "MediaError",
    "NegotiationRefused",
    "RequestRefused",
    "RoomNotFound",
    "RoomServer",
    "ServerError",
    "Store",
    "StoreError",
    "serve",
]
