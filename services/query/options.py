"""The read API's own settings, read from `QUERY_*` variables (the schema is the projection's
`PROJECTION_SCHEMA`). `QUERY_ENV_VARS` has the shape of `services.config.ENV_VARS`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.envvars import env_int

QUERY_ENV_VARS: dict[str, tuple[str, str]] = {
    "QUERY_MAX_WAITERS": (
        "1000",
        "reads waiting for the projection (minSeq/minPosition with waitMs) at once; more answer 503",
    ),
    "QUERY_ACQUIRE_TIMEOUT_MS": (
        "2000",
        "how long a read waits for one of the pool's database connections; past it 503",
    ),
}


@dataclass(frozen=True, slots=True)
class QueryOptions:
    max_waiters: int = 1000
    acquire_timeout_s: float = 2.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> QueryOptions:
        env = os.environ if env is None else env
        return cls(
            max_waiters=_int(env, "QUERY_MAX_WAITERS", 1, 1_000_000),
            acquire_timeout_s=_int(env, "QUERY_ACQUIRE_TIMEOUT_MS", 1, 600_000) / 1000,
        )


def _int(env: Mapping[str, str], name: str, low: int, high: int) -> int:
    return env_int(env, name, low, high, QUERY_ENV_VARS)
