"""The local room server: EnableX's REST API, Socket.IO signalling and WebRTC media legs.

Bots and tests join it like they would join EnableX; see docs/INTERFACES.md for the API.
"""

from .app import RoomServer, serve
from .errors import BadRequest, MediaError, RequestRefused, RoomNotFound, ServerError

__all__ = [
    "BadRequest",
    "MediaError",
    "RequestRefused",
    "RoomNotFound",
    "RoomServer",
    "ServerError",
    "serve",
]
