"""Reading settings from environment variables: the parsing helpers and the one way to declare a setting.

A leaf: it imports nothing of the engine, so every component can use it and `services.config` owns only the
shared settings. A component declares each of its settings once, as a field of its options dataclass:

    port: int = integer("GATEWAY_PORT", 3200, "port of `oee gateway`", 1, 65535)
    slow_grace_s: float = millis("GATEWAY_SLOW_GRACE_MS", 1.0, "how long ...", 0, 600_000)

The field's default is the setting's default; `table(Options)` derives the documented variable table from the
fields (name -> (default as written in the environment, meaning)), and `read(Options, env)` builds the options
from an environment, validating every value. So a default is written in one place, and `compose.yaml`, the
docs and `tests/unit/test_compose.py` check what the table derives from it.

An unset or empty variable takes its default; a malformed one raises `ConfigError` naming the variable and
the reason, at start.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "ConfigError",
    "Table",
    "Var",
    "choice",
    "drawn",
    "env_float",
    "env_int",
    "env_str",
    "flag",
    "integer",
    "millis",
    "millis_list",
    "millis_range",
    "number",
    "parse_float",
    "parse_int",
    "parsed",
    "read",
    "table",
    "text",
    "variables",
]

T = TypeVar("T")
Table = Mapping[str, tuple[str, str]]  # name -> (default as written in the environment, meaning)


class ConfigError(ValueError):
    """A configuration variable is present but unusable."""


# -- parsing helpers -----------------------------------------------------------------------------------------
def env_str(env: Mapping[str, str], name: str, table: Table) -> str:
    """The variable's value, or its documented default from `table` when unset or empty."""
    return env.get(name, "") or table[name][0]


def parse_int(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is outside {low}..{high}")
    return value


def parse_float(name: str, raw: str, low: float, high: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:  # also rejects NaN; the bounds as written (86400000, not 8.64e+07)
        raise ConfigError(f"{name}={value:g} is outside {_written(low)}..{_written(high)}")
    return value


def env_int(env: Mapping[str, str], name: str, low: int, high: int, table: Table) -> int:
    return parse_int(name, env_str(env, name, table), low, high)


def env_float(env: Mapping[str, str], name: str, low: float, high: float, table: Table) -> float:
    return parse_float(name, env_str(env, name, table), low, high)


# -- declared settings ---------------------------------------------------------------------------------------
_KEY = "oee.env"


@dataclass(frozen=True, slots=True)
class Var:
    """One environment variable behind one options field."""

    name: str
    default: str  # as written in the environment ("" means unset)
    doc: str
    convert: Callable[[str], Any]  # the raw value (the default when unset) -> the field's value

    def value(self, env: Mapping[str, str]) -> Any:
        return self.convert(env.get(self.name, "") or self.default)


def _field(var: Var, default: Any, *, hidden: bool = False) -> Any:
    # Typed `Any` so a declaration reads as the field's type (`port: int = integer(...)`); a Field at runtime.
    # `hidden`: left out of the options' repr, so a secret never reaches a log line that prints them.
    return dataclasses.field(default=default, repr=not hidden, metadata={_KEY: var})


def _written(value: float) -> str:
    """A number as a person writes it in the environment: 30, 0.5, 86400 (never 3e+01)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def text(name: str, default: str, doc: str) -> Any:
    """A string, as given."""
    return _field(Var(name, default, doc, lambda raw: raw), default)


def choice(name: str, default: str, doc: str, allowed: tuple[str, ...]) -> Any:
    """One of `allowed` (compared lower-case, after trimming)."""

    def convert(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ConfigError(f"{name}={raw[:40]!r} must be {' or '.join(allowed)}")
        return value

    return _field(Var(name, default, doc, convert), default)


def integer(name: str, default: int, doc: str, low: int, high: int) -> Any:
    """A whole number within low..high."""
    return _field(Var(name, str(default), doc, lambda raw: parse_int(name, raw, low, high)), default)


def number(name: str, default: float, doc: str, low: float, high: float, *, whole: bool = False) -> Any:
    """A number within low..high (`whole`: written as an integer, e.g. seconds, kept as a float)."""

    def convert(raw: str) -> float:
        return (
            float(parse_int(name, raw, int(low), int(high))) if whole else parse_float(name, raw, low, high)
        )

    return _field(Var(name, _written(default), doc, convert), default)


def millis(name: str, default_s: float, doc: str, low_ms: int, high_ms: int, *, whole: bool = True) -> Any:
    """A duration written in milliseconds (`whole`: an integer), kept in seconds."""

    def convert(raw: str) -> float:
        ms = parse_int(name, raw, low_ms, high_ms) if whole else parse_float(name, raw, low_ms, high_ms)
        return ms / 1000

    return _field(Var(name, _written(default_s * 1000), doc, convert), default_s)


def flag(name: str, default: bool, doc: str) -> Any:
    """0 or 1."""
    return _field(
        Var(name, "1" if default else "0", doc, lambda raw: parse_int(name, raw, 0, 1) == 1), default
    )


def millis_list(name: str, default_s: tuple[float, ...], doc: str) -> Any:
    """Comma-separated durations in milliseconds (none negative), kept in seconds."""

    def convert(raw: str) -> tuple[float, ...]:
        try:
            values = tuple(float(x) / 1000 for x in raw.split(",") if x.strip())
        except ValueError:
            raise ConfigError(f"{name}={raw!r} must be comma-separated milliseconds") from None
        if any(v < 0 for v in values):
            raise ConfigError(f"{name}={raw!r} must not be negative")
        return values

    written = ",".join(_written(s * 1000) for s in default_s)
    return _field(Var(name, written, doc, convert), default_s)


def millis_range(name: str, default_s: tuple[float, float], doc: str, high_ms: int) -> Any:
    """A duration in milliseconds, 'a' or a uniform range 'a-b' within 0..high_ms, kept as (low, high) seconds."""

    def convert(raw: str) -> tuple[float, float]:
        parts = raw.split("-")
        try:
            if len(parts) > 2:
                raise ValueError
            low, high = (float(p) for p in (parts[0], parts[-1]))
        except ValueError:
            raise ConfigError(f"{name}={raw!r} must be milliseconds 'a' or a range 'a-b'") from None
        if not 0 <= low <= high <= high_ms:  # also rejects NaN
            raise ConfigError(f"{name}={raw!r} must be within 0..{high_ms} with low <= high")
        return low / 1000, high / 1000

    low_s, high_s = default_s
    written = (
        _written(low_s * 1000) if low_s == high_s else f"{_written(low_s * 1000)}-{_written(high_s * 1000)}"
    )
    return _field(Var(name, written, doc, convert), default_s)


def parsed(
    name: str, default: T, written: str, doc: str, parse: Callable[[str], T], *, hidden: bool = False
) -> Any:
    """Any other shape: `parse` turns the raw value into the field's; `written` is `default` as written.

    `hidden`: a secret, kept out of the options' repr (`parse` must not put the value in its errors either)."""
    return _field(Var(name, written, doc, parse), default, hidden=hidden)


def drawn(name: str, doc: str, parse: Callable[[str], T], draw: Callable[[], T]) -> Any:
    """A setting that, unset, is drawn afresh for each instance (a random seed): `parse` reads a given value,
    `draw` makes one. The table writes its default as unset ("")."""
    var = Var(name, "", doc, lambda raw: parse(raw) if raw else draw())
    return dataclasses.field(default_factory=draw, metadata={_KEY: var})


def variables(cls: type) -> list[Var]:
    """The declared settings of an options dataclass, in field order."""
    return [f.metadata[_KEY] for f in dataclasses.fields(cls) if _KEY in f.metadata]


def table(cls: type) -> dict[str, tuple[str, str]]:
    """The variable table of an options dataclass: name -> (default as written, meaning)."""
    return {var.name: (var.default, var.doc) for var in variables(cls)}


def read(cls: type[T], env: Mapping[str, str], **given: Any) -> T:
    """`cls` from the environment: every declared setting read and validated; `given` fields as passed."""
    values = {f.name: f.metadata[_KEY].value(env) for f in dataclasses.fields(cls) if _KEY in f.metadata}  # type: ignore[arg-type]
    return cls(**{**values, **given})
