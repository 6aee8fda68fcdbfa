"""A small validator from plain YAML data to frozen dataclasses.

Why not a schema library: we need one-line errors that name the file, the key path and a
did-you-mean for typos, and the EnableX spellings (``audioMuted``) as keys while Python keeps
snake_case; a field's YAML key is ``field(metadata={"key": ...})`` when it differs (the SDK's
``LocalInfo``/``RoomInfo`` carry it too). ``checks`` adds validation to classes that are not ours:
``checks[cls](instance)`` returns the instance to keep, or raises ValueError like ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from ..errors import ConfigError

T = TypeVar("T")
Checks = Mapping[type, Callable[[Any], Any]]


def yaml_key(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("key", f.name))


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "a whole number"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (list, typing.List):  # noqa: UP006
        return "a list"
    if origin in (dict, typing.Dict) or tp is dict:  # noqa: UP006
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return str(tp)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def convert(tp: Any, value: Any, where: str, checks: Checks | None = None) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors: list[ConfigError] = []
        for option in options:
            if option is type(None):
                continue
            try:
                return convert(option, value, where, checks)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:  # ``X | None``: X's own reason ("a finite number", ...)
            raise errors[0]
        wanted = " or ".join(_type_name(o) for o in options if o is not type(None))
        raise ConfigError(f"{where} must be {wanted}, not {_describe(value)}")
    if tp is Any:
        return value
    if origin is Literal:
        if value in get_args(tp):
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in get_args(tp)], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{where} must be {_type_name(tp)}, not {_describe(value)}{hint}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):  # YAML's .nan/.inf: no duration, rate or level means that
                raise ConfigError(f"{where} must be a finite number, not {_describe(value)}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    elif origin is list:
        if isinstance(value, list):
            (item_tp,) = get_args(tp) or (Any,)
            return tuple(convert(item_tp, v, f"{where}[{i}]", checks) for i, v in enumerate(value))
    elif origin is dict or tp is dict:
        if isinstance(value, dict):
            return dict(value)
    elif dataclasses.is_dataclass(tp):
        return build(tp, value, where, checks)  # type: ignore[arg-type]
    raise ConfigError(f"{where} must be {_type_name(tp)}, not {_describe(value)}")


def build(cls: type[T], data: Any, where: str, checks: Checks | None = None) -> T:
    """Make ``cls`` from ``data``; unknown keys, wrong types and missing values raise ConfigError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'top level'} must be a mapping, not {_describe(data)}")
    hints = get_type_hints(cls)
    fields = {yaml_key(f): f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            if not close:
                lowered = {k.lower().replace("_", ""): k for k in fields}
                hit = lowered.get(str(key).lower().replace("_", ""))
                close = [hit] if hit else []
            hint = f" (did you mean '{close[0]}'?)" if close else f"; known keys: {', '.join(fields)}"
            raise ConfigError(f"{where or 'top level'}: unknown key '{key}'{hint}")
    kwargs: dict[str, Any] = {}
    for key, f in fields.items():
        path = f"{where}.{key}" if where else key
        if key in data:
            kwargs[f.name] = convert(hints[f.name], data[key], path, checks)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{path} is required")
    check = (checks or {}).get(cls)
    try:
        made = cls(**kwargs)
        return check(made) if check is not None else made
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}" if where else str(exc)) from None
