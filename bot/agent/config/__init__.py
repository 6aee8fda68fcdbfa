"""The agent's config: YAML -> validated dataclasses (``model``), read by ``load``."""

from ..errors import ConfigError
from .load import load_config, parse_config
from .model import (
    DEFAULT_API_URL,
    AgentConfig,
    BotConfig,
    EmbeddedConfig,
    MediaConfig,
    PolicyConfig,
    RampConfig,
    RampStageConfig,
    ReceiveConfig,
)

__all__ = [
    "DEFAULT_API_URL",
    "AgentConfig",
    "BotConfig",
    "ConfigError",
    "EmbeddedConfig",
    "MediaConfig",
    "PolicyConfig",
    "RampConfig",
    "RampStageConfig",
    "ReceiveConfig",
    "load_config",
    "parse_config",
]
