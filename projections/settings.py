"""The projector's settings, read from `PROJECTION_*` / `PROJECTOR_*` variables.

`PROJECTION_ENV_VARS` has the shape of `services.config.ENV_VARS` so the project-wide list can include it.
The shared ones (broker, database, topic prefix) come from `services.config.Settings`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from services.envvars import ConfigError, env_int, env_str

PROJECTION_NAME = "orders"
"""The projection's name in `projector_positions.projection` (several projections can share that table)."""

NOTIFY_CHANNEL = "oee_projection"
"""The projector NOTIFYs this channel once per committed batch; readers waiting for a position LISTEN."""

PROJECTION_ENV_VARS: dict[str, tuple[str, str]] = {
    "PROJECTION_SCHEMA": (
        "public",
        "Postgres schema of the order projection (tests and rebuilds use others)",
    ),
    "PROJECTOR_BATCH_MAX": ("2000", "most log records the projector applies in one Postgres transaction"),
    "PROJECTOR_POLL_MS": ("500", "how long the projector waits for records before it looks again"),
    "PROJECTOR_HEARTBEAT_MS": ("1000", "how often an idle projector records the log's end (for lag)"),
    "PROJECTOR_FAILPOINT": ("", "tests only: 'before_commit:N' or 'after_commit:N' SIGKILLs at batch N"),
}

_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_FAILPOINT = re.compile(r"(before_commit|after_commit):([1-9][0-9]*)")


@dataclass(frozen=True, slots=True)
class ProjectorOptions:
    """Tunables of the projector. The defaults suit production; tests shrink some of them."""

    schema: str = "public"
    batch_max: int = 2000
    poll_s: float = 0.5
    heartbeat_s: float = 1.0
    failpoint: tuple[str, int] | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProjectorOptions:
        env = os.environ if env is None else env
        failpoint = _get(env, "PROJECTOR_FAILPOINT")
        fp: tuple[str, int] | None = None
        if failpoint:
            match = _FAILPOINT.fullmatch(failpoint)
            if match is None:
                raise ConfigError(
                    f"PROJECTOR_FAILPOINT={failpoint!r} must be before_commit:N or after_commit:N"
                )
            fp = (match.group(1), int(match.group(2)))
        return cls(
            schema=schema_from_env(env),
            batch_max=_int(env, "PROJECTOR_BATCH_MAX", 1, 100_000),
            poll_s=_int(env, "PROJECTOR_POLL_MS", 1, 60_000) / 1000,
            heartbeat_s=_int(env, "PROJECTOR_HEARTBEAT_MS", 10, 600_000) / 1000,
            failpoint=fp,
        )


def schema_from_env(env: Mapping[str, str] | None = None) -> str:
    """`PROJECTION_SCHEMA`, checked: the projector, the query API and `rebuild` must agree on it."""
    env = os.environ if env is None else env
    schema = _get(env, "PROJECTION_SCHEMA")
    if not _SCHEMA.fullmatch(schema):
        raise ConfigError(f"PROJECTION_SCHEMA={schema!r} must be lower-case letters, digits and underscores")
    return schema


def _get(env: Mapping[str, str], name: str) -> str:
    return env_str(env, name, PROJECTION_ENV_VARS)


def _int(env: Mapping[str, str], name: str, low: int, high: int) -> int:
    return env_int(env, name, low, high, PROJECTION_ENV_VARS)
