"""The read API's own settings, each declared once with its `QUERY_*` variable (`services.envvars`); the
schema is the projection's `PROJECTION_SCHEMA`. `QUERY_ENV_VARS` is derived from the declarations."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.envvars import integer, millis, read, table


@dataclass(frozen=True, slots=True)
class QueryOptions:
    max_waiters: int = integer(
        "QUERY_MAX_WAITERS", 1000,
        "reads waiting for the projection (minSeq/minPosition with waitMs) at once; more answer 503", 1, 1_000_000,
    )  # fmt: skip
    acquire_timeout_s: float = millis(
        "QUERY_ACQUIRE_TIMEOUT_MS", 2.0,
        "how long a read waits for one of the pool's database connections; past it 503", 1, 600_000,
    )  # fmt: skip

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> QueryOptions:
        return read(cls, os.environ if env is None else env)


QUERY_ENV_VARS = table(QueryOptions)
