"""Config dataclasses: defaults live in code, knobs carry their range and help text.

The metadata on each field is what the CLI validates against and what a GUI form is built from,
so a knob is declared once.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from sslstudio.core.fileio import atomic_write_bytes


class ConfigError(ValueError):
    """A knob that does not exist or a value it cannot take. The message says which and why."""


def knob(default: Any, *, help: str, low: float | None = None, high: float | None = None,
         choices: tuple[str, ...] | None = None, auto: float | None = None,
         before: Any = None) -> Any:
    """A config field with the range a user may set it to and a one-line explanation; `auto`,
    a value outside the range that asks the program to choose; `before`, for a knob added after
    runs were saved without it, the value that means what those runs did."""
    meta = {"help": help, "low": low, "high": high, "choices": choices, "auto": auto,
            "before": before}
    return dataclasses.field(default=default, metadata=meta)


def knobs(config_cls_or_obj: Any) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(config_cls_or_obj) if "help" in f.metadata]


def describe_knob(field: dataclasses.Field) -> str:
    meta = field.metadata
    if meta.get("choices"):
        allowed = "|".join(meta["choices"])
    elif meta.get("low") is not None or meta.get("high") is not None:
        allowed = f"{_fmt(meta.get('low'))}..{_fmt(meta.get('high'))}"
        if meta.get("auto") is not None:
            allowed = f"{_fmt(meta['auto'])} or {allowed}"
    else:
        allowed = ""
    rng = f" [{allowed}]" if allowed else ""
    return f"{field.name}={_fmt(field.default)}{rng}  {meta['help']}"


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def coerce(field: dataclasses.Field, raw: Any) -> Any:
    """Turn a raw value (string from the command line, or a TOML value) into the field's type."""
    kind = type(field.default)
    try:
        if kind is bool:
            if isinstance(raw, bool):
                value = raw
            elif str(raw).lower() in ("1", "true", "yes", "on"):
                value = True
            elif str(raw).lower() in ("0", "false", "no", "off"):
                value = False
            else:
                raise ValueError
        elif kind is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            value = int(raw)
        elif kind is float:
            value = float(raw)
        else:
            value = str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{field.name}={raw!r} is not a valid {kind.__name__}") from None
    check_range(field, value)
    return value


def check_range(field: dataclasses.Field, value: Any) -> None:
    meta = field.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{field.name}={value!r} is not one of {', '.join(meta['choices'])}")
    low, high = meta.get("low"), meta.get("high")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value:  # NaN
            raise ConfigError(f"{field.name} cannot be NaN")
        if meta.get("auto") is not None and value == meta["auto"]:
            return
        if (low is not None and value < low) or (high is not None and value > high):
            auto = f"{_fmt(meta['auto'])} (auto) or " if meta.get("auto") is not None else ""
            raise ConfigError(
                f"{field.name}={_fmt(value)} is out of range; allowed {auto}{_fmt(low)}..{_fmt(high)}"
            )


def validate(config: Any) -> None:
    for field in knobs(config):
        check_range(field, getattr(config, field.name))


def with_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """A copy of `config` with the given knobs set; unknown names raise ConfigError."""
    by_name = {f.name: f for f in knobs(config)}
    changes = {}
    for name, raw in overrides.items():
        if name not in by_name:
            raise ConfigError(
                f"unknown knob {name!r}; known: {', '.join(sorted(by_name)) or 'none'}"
            )
        changes[name] = coerce(by_name[name], raw)
    return dataclasses.replace(config, **changes)


def to_dict(config: Any) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def from_dict(config_cls: type, values: dict[str, Any]) -> Any:
    """Build a config from saved values; keys a newer or older version does not know are ignored,
    and a knob the saved values lack takes its `before` value where it has one (a resumed run goes
    on as it started, not with a default added since)."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    kwargs = {name: f.metadata["before"] for name, f in fields.items()
              if f.metadata.get("before") is not None and name not in values}
    for name, value in values.items():
        if name in fields:
            kwargs[name] = coerce(fields[name], value) if "help" in fields[name].metadata else value
    return config_cls(**kwargs)


def parse_set_options(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def write_toml(path: Path, data: dict[str, Any]) -> None:
    atomic_write_bytes(path, tomli_w.dumps(_toml_safe(data)).encode("utf-8"))


def read_toml(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        return tomllib.load(f)


def _toml_safe(value: Any) -> Any:
    # TOML has no null; an unset optional path is saved as an empty string.
    if isinstance(value, dict):
        return {k: _toml_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_toml_safe(v) for v in value]
    if value is None:
        return ""
    if isinstance(value, Path):
        return str(value)
    return value
