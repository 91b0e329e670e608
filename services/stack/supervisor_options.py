"""The supervisor's settings, each declared once with its `SUPERVISOR_*` variable (`services.envvars`); log sizes
are OEE_LOG_MAX_BYTES/BACKUPS.

`SUPERVISOR_ENV_VARS` is derived from the declarations, and the defaults are `RestartPolicy()`'s own. A
malformed value raises `ConfigError` naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.envvars import ConfigError, integer, number, parsed, read, table
from services.stack.liveness import LivenessPolicy
from services.stack.restarts import RestartPolicy

_POLICY = RestartPolicy()
_LIVENESS = LivenessPolicy()


def _backoff(raw: str) -> tuple[float, float]:
    """'500,30000' -> (0.5, 30.0) seconds."""
    try:
        first_ms, longest_ms = (int(x) for x in raw.split(","))
    except ValueError:
        raise ConfigError(f"SUPERVISOR_BACKOFF_MS={raw!r} must be two integers: first,longest") from None
    if not 1 <= first_ms <= longest_ms <= 3_600_000:
        raise ConfigError(f"SUPERVISOR_BACKOFF_MS={raw!r} needs 1 <= first <= longest <= 3600000")
    return first_ms / 1000, longest_ms / 1000


def _crash_loop(raw: str) -> tuple[int, float]:
    """'5/120' -> 5 restarts within 120.0 seconds."""
    try:
        restarts, window = raw.split("/")
        loop_restarts, loop_window = int(restarts), float(window)
    except ValueError:
        raise ConfigError(f"SUPERVISOR_CRASH_LOOP={raw!r} must be N/S, e.g. 5/120") from None
    if not (1 <= loop_restarts <= 1000 and 1 <= loop_window <= 86_400):
        raise ConfigError(f"SUPERVISOR_CRASH_LOOP={raw!r} needs N in 1..1000 and S in 1..86400")
    return loop_restarts, loop_window


@dataclass(frozen=True, slots=True)
class SupervisorOptions:
    metrics_port: int = integer(
        "SUPERVISOR_METRICS_PORT", 9310, "port of the supervisor's /metrics (restarts, crash loops); 0: off",
        0, 65535,
    )  # fmt: skip
    backoff_s: tuple[float, float] = parsed(
        "SUPERVISOR_BACKOFF_MS", (_POLICY.backoff_min_s, _POLICY.backoff_max_s),
        f"{round(_POLICY.backoff_min_s * 1000)},{round(_POLICY.backoff_max_s * 1000)}",
        "first and longest wait before restarting a process that exited", _backoff,
    )  # fmt: skip
    healthy_s: float = number(
        "SUPERVISOR_HEALTHY_S",
        _POLICY.healthy_s,
        "a run this long resets the backoff to its first wait",
        1,
        86_400,
    )
    crash_loop: tuple[int, float] = parsed(
        "SUPERVISOR_CRASH_LOOP", (_POLICY.loop_restarts, _POLICY.loop_window_s),
        f"{_POLICY.loop_restarts}/{_POLICY.loop_window_s:g}",
        "N/S: N restarts within S seconds is a crash loop (an ERROR, a metric)", _crash_loop,
    )  # fmt: skip
    stop_timeout_s: float = number(
        "SUPERVISOR_STOP_TIMEOUT_S",
        20.0,
        "how long a service may take to stop after SIGTERM before SIGKILL",
        1,
        600,
    )
    # Liveness (decision 0033). Defaults: 4 probes 5 s apart, 3 s each, say "hung" after about 20-25 s of
    # silence. A healthy service on a loaded 2-core machine answers /health or /metrics in milliseconds (its
    # event loop or the metrics thread stalls for well under a second); 4 misses in a row of 3 s each is a
    # stopped or stuck process, not load.
    probe_interval_s: float = number(
        "SUPERVISOR_PROBE_INTERVAL_S",
        _LIVENESS.interval_s,
        "how often each service's /health (or /metrics port) is probed; 0: no liveness probes",
        0,
        3600,
    )
    probe_timeout_s: float = number(
        "SUPERVISOR_PROBE_TIMEOUT_S",
        _LIVENESS.timeout_s,
        "how long a liveness probe waits for an HTTP answer before it counts as failed",
        0.1,
        600,
    )
    probe_failures: int = integer(
        "SUPERVISOR_PROBE_FAILURES",
        _LIVENESS.failures,
        "failed liveness probes in a row after which a service is hung: SIGKILL, then the normal restart",
        1,
        1000,
    )
    probe_grace_s: float = number(
        "SUPERVISOR_PROBE_GRACE_S",
        _LIVENESS.grace_s,
        "a service's probes fail without counting this long after its start (still starting is not hung)",
        0,
        86_400,
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SupervisorOptions:
        return read(cls, os.environ if env is None else env)

    @property
    def policy(self) -> RestartPolicy:
        """When to restart a process that exited, and when its restarts are a crash loop."""
        (backoff_min_s, backoff_max_s), (loop_restarts, loop_window_s) = self.backoff_s, self.crash_loop
        return RestartPolicy(backoff_min_s, backoff_max_s, self.healthy_s, loop_restarts, loop_window_s)

    @property
    def liveness(self) -> LivenessPolicy:
        """When a service that runs but does not answer is hung."""
        return LivenessPolicy(
            self.probe_interval_s, self.probe_timeout_s, self.probe_failures, self.probe_grace_s
        )


SUPERVISOR_ENV_VARS = table(SupervisorOptions)
