"""The supervisor's settings, read from `SUPERVISOR_*` variables (log sizes: OEE_LOG_MAX_BYTES/BACKUPS).

`SUPERVISOR_ENV_VARS` has the shape of `services.config.ENV_VARS` so the project-wide list includes it. A
malformed value raises `ConfigError` naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.envvars import ConfigError, env_float, env_int, env_str
from services.stack.restarts import RestartPolicy

SUPERVISOR_ENV_VARS: dict[str, tuple[str, str]] = {
    "SUPERVISOR_METRICS_PORT": ("9310", "port of the supervisor's /metrics (restarts, crash loops); 0: off"),
    "SUPERVISOR_BACKOFF_MS": ("500,30000", "first and longest wait before restarting a process that exited"),
    "SUPERVISOR_HEALTHY_S": ("60", "a run this long resets the backoff to its first wait"),
    "SUPERVISOR_CRASH_LOOP": (
        "5/120",
        "N/S: N restarts within S seconds is a crash loop (an ERROR, a metric)",
    ),
    "SUPERVISOR_STOP_TIMEOUT_S": ("20", "how long a service may take to stop after SIGTERM before SIGKILL"),
}


@dataclass(frozen=True)
class SupervisorOptions:
    policy: RestartPolicy
    metrics_port: int
    stop_timeout_s: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SupervisorOptions:
        env = os.environ if env is None else env
        backoff = env_str(env, "SUPERVISOR_BACKOFF_MS", SUPERVISOR_ENV_VARS)
        loop = env_str(env, "SUPERVISOR_CRASH_LOOP", SUPERVISOR_ENV_VARS)
        try:
            first_ms, longest_ms = (int(x) for x in backoff.split(","))
        except ValueError:
            raise ConfigError(
                f"SUPERVISOR_BACKOFF_MS={backoff!r} must be two integers: first,longest"
            ) from None
        try:
            restarts, window = loop.split("/")
            loop_restarts, loop_window = int(restarts), float(window)
        except ValueError:
            raise ConfigError(f"SUPERVISOR_CRASH_LOOP={loop!r} must be N/S, e.g. 5/120") from None
        if not 1 <= first_ms <= longest_ms <= 3_600_000:
            raise ConfigError(f"SUPERVISOR_BACKOFF_MS={backoff!r} needs 1 <= first <= longest <= 3600000")
        if not (1 <= loop_restarts <= 1000 and 1 <= loop_window <= 86_400):
            raise ConfigError(f"SUPERVISOR_CRASH_LOOP={loop!r} needs N in 1..1000 and S in 1..86400")
        policy = RestartPolicy(
            backoff_min_s=first_ms / 1000,
            backoff_max_s=longest_ms / 1000,
            healthy_s=env_float(env, "SUPERVISOR_HEALTHY_S", 1, 86_400, SUPERVISOR_ENV_VARS),
            loop_restarts=loop_restarts,
            loop_window_s=loop_window,
        )
        return cls(
            policy=policy,
            metrics_port=env_int(env, "SUPERVISOR_METRICS_PORT", 0, 65535, SUPERVISOR_ENV_VARS),
            stop_timeout_s=env_float(env, "SUPERVISOR_STOP_TIMEOUT_S", 1, 600, SUPERVISOR_ENV_VARS),
        )
