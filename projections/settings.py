"""The projector's settings, read from `PROJECTION_*` / `PROJECTOR_*` variables.

`PROJECTION_ENV_VARS` has the shape of `services.config.ENV_VARS` so the project-wide list can include it.
The shared ones (broker, database, topic prefix) come from `services.config.Settings`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from services.envvars import ConfigError, integer, millis, parsed, read, table, variables
from services.static_membership import instance_id

PROJECTION_NAME = "orders"
"""The projection's name in `projector_positions.projection` (several projections can share that table)."""

NOTIFY_CHANNEL = "oee_projection"
"""The projector NOTIFYs this channel once per committed batch; readers waiting for a position LISTEN."""

_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_FAILPOINT = re.compile(r"(before_commit|after_commit):([1-9][0-9]*)")


def _schema(raw: str) -> str:
    if not _SCHEMA.fullmatch(raw):
        raise ConfigError(f"PROJECTION_SCHEMA={raw!r} must be lower-case letters, digits and underscores")
    return raw


def _failpoint(raw: str) -> tuple[str, int] | None:
    if not raw:
        return None
    match = _FAILPOINT.fullmatch(raw)
    if match is None:
        raise ConfigError(f"PROJECTOR_FAILPOINT={raw!r} must be before_commit:N or after_commit:N")
    return match.group(1), int(match.group(2))


@dataclass(frozen=True, slots=True)
class ProjectorOptions:
    """Tunables of the projector. The defaults suit production; tests shrink some of them."""

    schema: str = parsed(
        "PROJECTION_SCHEMA", "public", "public", "Postgres schema of the order projection (tests and rebuilds use others)",
        _schema,
    )  # fmt: skip
    batch_max: int = integer(
        "PROJECTOR_BATCH_MAX",
        2000,
        "most log records the projector applies in one Postgres transaction",
        1,
        100_000,
    )
    poll_s: float = millis(
        "PROJECTOR_POLL_MS", 0.5, "how long the projector waits for records before it looks again", 1, 60_000
    )
    heartbeat_s: float = millis(
        "PROJECTOR_HEARTBEAT_MS",
        1.0,
        "how often an idle projector records the log's end (for lag)",
        10,
        600_000,
    )
    instance_id: str | None = parsed(
        "PROJECTOR_INSTANCE_ID", None, "",
        "static membership id in the projector's consumer group (a restart takes its partitions back at once);"
        " unset: dynamic membership. `up` gives each instance its own",
        instance_id("PROJECTOR_INSTANCE_ID"),
    )  # fmt: skip
    failpoint: tuple[str, int] | None = parsed(
        "PROJECTOR_FAILPOINT", None, "", "tests only: 'before_commit:N' or 'after_commit:N' SIGKILLs at batch N",
        _failpoint,
    )  # fmt: skip

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProjectorOptions:
        return read(cls, os.environ if env is None else env)


PROJECTION_ENV_VARS = table(ProjectorOptions)
_SCHEMA_VAR = next(var for var in variables(ProjectorOptions) if var.name == "PROJECTION_SCHEMA")


def schema_from_env(env: Mapping[str, str] | None = None) -> str:
    """`PROJECTION_SCHEMA`, checked: the projector, the query API and `rebuild` must agree on it."""
    return str(_SCHEMA_VAR.value(os.environ if env is None else env))
