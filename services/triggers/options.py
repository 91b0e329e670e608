"""The trigger engine's settings, read from `TRIGGERS_*` variables (the shared ones come from `services.config`).

`TRIGGERS_ENV_VARS` has the shape of `services.config.ENV_VARS` so the project-wide list includes it. A
malformed value raises `ConfigError` naming the variable.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from services.envvars import env_int, env_str

TRIGGERS_ENV_VARS: dict[str, tuple[str, str]] = {
    "TRIGGERS_HISTORY_S": (
        "60",
        "market events kept per pair: an order the engine learns of late is checked against those since it opened",
    ),
    "TRIGGERS_INSTANCE_ID": (
        "",
        "static membership id in the engine's consumer group (a restart takes its partitions back at once);"
        " unset: the host name",
    ),
}


@dataclass(frozen=True, slots=True)
class TriggerOptions:
    history_s: float = 60.0
    instance_id: str = ""
    history_max: int = 5_000  # market events kept per pair, whatever their age

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TriggerOptions:
        env = os.environ if env is None else env
        return cls(
            history_s=float(env_int(env, "TRIGGERS_HISTORY_S", 1, 86_400, TRIGGERS_ENV_VARS)),
            instance_id=env_str(env, "TRIGGERS_INSTANCE_ID", TRIGGERS_ENV_VARS) or socket.gethostname(),
        )
