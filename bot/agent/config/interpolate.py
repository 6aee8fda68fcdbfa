"""``${NAME}`` and ``${NAME:-default}`` in YAML scalars.

Interpolation works on parsed values, not on the file's text, so an environment value can
never inject YAML structure. A scalar that is a single placeholder is re-read as YAML after
substitution, so ``count: ${ENX_BOTS:-50}`` is an integer and ``audio: ${A:-true}`` a boolean.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from ..errors import ConfigError

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_WHOLE = re.compile(r"^\s*\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}\s*$")


def interpolate(value: Any, env: Mapping[str, str], where: str = "") -> Any:
    if isinstance(value, dict):
        return {k: interpolate(v, env, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        got = env.get(name)
        if got is not None and (got != "" or default is None):
            return got
        if default is not None:
            return default
        raise ConfigError(
            f"{where}: environment variable {name} is not set: export it, "
            f"or write ${{{name}:-default}} in the config"
        )

    out = _PLACEHOLDER.sub(sub, value)
    if _WHOLE.match(value):
        if out == "":
            return None
        try:
            return yaml.safe_load(out)
        except yaml.YAMLError:
            return out
    return out
