"""The YAML agent: config, one bot's behaviour, many bots per process, operations, logging set-up.

This is the package's face: ``bot.cli`` (and anyone embedding the agent) imports from here.
"""

from .bot import Bot, BotResult, RestTokens, TokenSourceError
from .config import AgentConfig, BotConfig, load_config
from .config.media_check import check_media
from .config.token_check import check_tokens
from .errors import (
    EXIT_CONFIG,
    EXIT_INCOMPLETE,
    EXIT_JOIN_FAILED,
    EXIT_NOT_ADMITTED,
    EXIT_OK,
    EXIT_SESSION_LOST,
    AgentError,
    ConfigError,
    JoinError,
)
from .logs import configure_logging
from .ops import Ops, merge_reports, write_merged
from .swarm import Agent, Supervisor, SwarmPlan, die_with_parent, resolve_workers
from .swarm.tuning import loop_factory, raise_fd_limit, tune_gc

__all__ = [
    "EXIT_CONFIG",
    "EXIT_INCOMPLETE",
    "EXIT_JOIN_FAILED",
    "EXIT_NOT_ADMITTED",
    "EXIT_OK",
    "EXIT_SESSION_LOST",
    "Agent",
    "AgentConfig",
    "AgentError",
    "Bot",
    "BotConfig",
    "BotResult",
    "ConfigError",
    "JoinError",
    "Ops",
    "RestTokens",
    "Supervisor",
    "SwarmPlan",
    "TokenSourceError",
    "check_media",
    "check_tokens",
    "configure_logging",
    "die_with_parent",
    "load_config",
    "loop_factory",
    "merge_reports",
    "raise_fd_limit",
    "resolve_workers",
    "tune_gc",
    "write_merged",
]
