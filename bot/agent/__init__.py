"""The YAML agent: config, one bot's behaviour, many bots per process, logging set-up."""

from .config import AgentConfig, BotConfig, load_config
from .errors import (
    EXIT_CONFIG,
    EXIT_JOIN_FAILED,
    EXIT_OK,
    EXIT_SESSION_LOST,
    AgentError,
    ConfigError,
    JoinError,
)

__all__ = [
    "EXIT_CONFIG",
    "EXIT_JOIN_FAILED",
    "EXIT_OK",
    "EXIT_SESSION_LOST",
    "AgentConfig",
    "AgentError",
    "BotConfig",
    "ConfigError",
    "JoinError",
    "load_config",
]
