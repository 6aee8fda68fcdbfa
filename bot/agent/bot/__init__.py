"""One bot: joining with a token, its room events as log lines, what it receives, token sources."""

from .receive import Receiver
from .room_log import RoomLog
from .run import Bot, BotResult, Outcome, media_spec
from .scenario import ScenarioRun
from .tokens import RestApi, RestTokens, StaticToken, TokenSource, TokenSourceError, UrlTokens, basic_auth

__all__ = [
    "Bot",
    "BotResult",
    "Outcome",
    "Receiver",
    "RestApi",
    "RestTokens",
    "RoomLog",
    "ScenarioRun",
    "StaticToken",
    "TokenSource",
    "TokenSourceError",
    "UrlTokens",
    "basic_auth",
    "media_spec",
]
