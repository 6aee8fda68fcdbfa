"""Agent-level failures, each mapped to the CLI's exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_JOIN_FAILED = 3
EXIT_SESSION_LOST = 4
EXIT_NOT_ADMITTED = 5  # a waiting room denied a bot or kept it waiting past wait_timeout_s
EXIT_INCOMPLETE = 6
"""``report merge``: merged, but shards are missing or failed (named in the report)."""


class AgentError(Exception):
    """A failure with one clear line for stderr and an exit code."""

    exit_code = EXIT_CONFIG


class ConfigError(AgentError):
    """The config (file, keys, values, environment) is wrong: exit 2."""

    exit_code = EXIT_CONFIG


class JoinError(AgentError):
    """A bot could not get into its room (token, server, network): exit 3."""

    exit_code = EXIT_JOIN_FAILED
