"""The trigger engine's settings, each declared once with its `TRIGGERS_*` variable (`services.envvars`).

`TRIGGERS_ENV_VARS` is derived from the declarations. A malformed value raises `ConfigError` naming the
variable.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from services.envvars import number, read, table, text


@dataclass(frozen=True, slots=True)
class TriggerOptions:
    history_s: float = number(
        "TRIGGERS_HISTORY_S", 60.0,
        "market events kept per pair: an order the engine learns of late is checked against those since it opened",
        1, 86_400, whole=True,
    )  # fmt: skip
    # Unset: the host name (filled in by `from_env`).
    instance_id: str = text(
        "TRIGGERS_INSTANCE_ID", "",
        "static membership id in the engine's consumer group (a restart takes its partitions back at once);"
        " unset: the host name",
    )  # fmt: skip
    history_max: int = 5_000  # market events kept per pair, whatever their age

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TriggerOptions:
        options = read(cls, os.environ if env is None else env)
        return (
            options if options.instance_id else dataclasses.replace(options, instance_id=socket.gethostname())
        )


TRIGGERS_ENV_VARS = table(TriggerOptions)
