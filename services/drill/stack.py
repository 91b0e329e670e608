"""The drill's own stack: a state directory and free ports of its own, brokers and PostgreSQL started by
`oee up` like a user's (never the user's `.stack`, never the brokers or database named in the environment:
a drill kills things). The routers reach the venue through the drill's reply-dropping proxy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services import config
from services.config import Settings
from services.stack import manager
from services.stack.ports import free_port, free_port_block

# Variables of the environment the drill's stack must not inherit: it runs its own of each.
NOT_INHERITED = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "DATABASE_URL",
    "OEE_TOPIC_PREFIX",
    "VENUE_URL",
    "VENUE_LEDGER_PATH",
)


@dataclass
class DrillStack:
    root: Path
    env: dict[str, str]
    venue_port: int

    @classmethod
    def create(
        cls,
        root: Path,
        *,
        brokers: int,
        routers: int,
        apis: int,
        partitions: int,
        proxy_port: int,
        **extra: str,
    ) -> DrillStack:
        env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
        kafka = free_port_block(2 * brokers)
        venue = free_port()
        env.update(
            OEE_STATE_DIR=str(root / "state"),
            OEE_KAFKA_PORT=str(kafka),
            OEE_KAFKA_CONTROLLER_PORT=str(kafka + 1),
            OEE_KAFKA_BROKERS=str(brokers),
            OEE_PG_PORT=str(free_port()),
            PORT=str(free_port_block(apis)),
            GATEWAY_PORT=str(free_port()),
            VENUE_PORT=str(venue),
            VENUE_URL=f"http://127.0.0.1:{proxy_port}",  # the routers reach the venue through the proxy
            SUPERVISOR_METRICS_PORT=str(free_port()),
            ROUTER_METRICS_PORT="0",  # fixed defaults would collide with a stack already running here
            PROJECTOR_METRICS_PORT="0",
            TRIGGERS_METRICS_PORT="0",  # (and the supervisor's liveness probe would ask another stack's engine)
            OEE_ROUTERS=str(routers),
            OEE_APIS=str(apis),
            OEE_GATEWAYS="1",  # the subscribers' gateway, a process of its own to kill
            OEE_PARTITIONS=str(partitions),
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return cls(root, env, venue)

    def oee(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    @property
    def settings(self) -> Settings:
        return config.load(self.env)

    @property
    def apis(self) -> list[str]:
        base = int(self.env["PORT"])
        return [f"http://127.0.0.1:{base + n}" for n in range(int(self.env["OEE_APIS"]))]

    @property
    def gateway(self) -> str:
        return f"ws://127.0.0.1:{self.env['GATEWAY_PORT']}/ws"

    @property
    def ledger_path(self) -> Path:
        return self.settings.stack.state_dir / "venue" / "ledger.jsonl"

    def components(self) -> dict[str, dict[str, Any]]:
        """`oee status --json`'s rows, computed in this process."""
        import dataclasses

        rows, _ = manager.status(self.settings)
        return {r.name: dataclasses.asdict(r) for r in rows}
