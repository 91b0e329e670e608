"""A stack of a test's own, driven through `oee` as a user drives it: its own state directory and free ports
(broker nodes, PostgreSQL, API, venue, supervisor metrics), or the suite's shared broker and database.

For supervision and fault tests (and drills built on them): start one or three brokers with every service
supervised, read `oee status --json`, SIGKILL/SIGSTOP/restart a service or a broker node by name or node id,
find which node leads a partition.

    run = StackRun.create(tmp_path, brokers=3)
    run.up()
    run.signal("kafka-2", signal.SIGKILL)        # or run.broker_signal(2, signal.SIGSTOP)
    run.wait_component("kafka-2", lambda c: c["state"] == "running" and c["restarts"] == 1, 60)
    run.down()
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services import config
from services.config import Settings
from services.stack import kafka, manager
from services.stack.ports import free_port_block
from services.stack.topics import partition_leaders
from tests.e2e.harness import free_port

Component = dict[str, Any]


@dataclass
class StackRun:
    root: Path
    env: dict[str, str]

    @classmethod
    def create(
        cls,
        root: Path,
        brokers: int = 1,
        shared_kafka: str | None = None,
        shared_database: str | None = None,
        **extra: str,
    ) -> StackRun:
        """A stack under `root`. `shared_kafka`/`shared_database` use those instead of starting our own
        (with a topic prefix of this run's own); `extra` sets or overrides variables."""
        env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")}
        # The brokers' ports outside the ephemeral range: a node connecting to a peer not yet listening can
        # otherwise be connected to itself (services/stack/ports.py).
        base = free_port_block(2 * brokers)
        env.update(
            OEE_STATE_DIR=str(root / "state"),
            OEE_KAFKA_PORT=str(base),
            OEE_KAFKA_CONTROLLER_PORT=str(base + 1),
            OEE_KAFKA_BROKERS=str(brokers),
            OEE_PG_PORT=str(free_port()),
            PORT=str(free_port()),
            VENUE_PORT=str(free_port()),
            SUPERVISOR_METRICS_PORT=str(free_port()),
            ROUTER_METRICS_PORT="0",  # the defaults would collide with other stacks on this machine
            PROJECTOR_METRICS_PORT="0",
            TRIGGERS_METRICS_PORT="0",  # (and a probe of a shared port would ask another stack's engine)
            VENUE_EXEC_LATENCY_MS="200",
            OEE_PARTITIONS="3",
            LOG_LEVEL="INFO",
        )
        if shared_kafka:
            env["KAFKA_BOOTSTRAP_SERVERS"] = shared_kafka
            env["OEE_TOPIC_PREFIX"] = f"r{root.name[-12:]}{time.monotonic_ns() % 10**8}."
        if shared_database:
            env["DATABASE_URL"] = shared_database
        env.update(extra)
        return cls(root, env)

    # -- commands ---------------------------------------------------------------------------------------------

    def oee(
        self, *args: str, timeout: float = 240, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.cli", *args],
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def up(self) -> str:
        result = self.oee("up")
        assert result.returncode == 0, f"oee up failed:\n{result.stdout}\n{result.stderr}\n{self.logs_tail()}"
        return result.stdout

    def down(self) -> str:
        return self.oee("down").stdout

    def status(self) -> dict[str, Component]:
        """What `oee status --json` says, computed in this process (the same code, without a Python start)."""
        rows, _ = manager.status(self.settings)
        return {r.name: dataclasses.asdict(r) for r in rows}

    def status_cli(self) -> tuple[dict[str, Component], str]:
        """`oee status --json` and `oee status` as a user runs them."""
        result = self.oee("status", "--json", timeout=60)
        assert result.returncode == 0, result.stderr
        text = self.oee("status", timeout=60).stdout
        return {c["name"]: c for c in json.loads(result.stdout)["components"]}, text

    # -- where things are -------------------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return config.load(self.env)

    @property
    def state_dir(self) -> Path:
        return Path(self.env["OEE_STATE_DIR"])

    @property
    def bootstrap(self) -> str:
        return self.settings.bootstrap_servers

    @property
    def database_url(self) -> str:
        return self.settings.database_url

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.env['PORT']}"

    @property
    def supervisor_metrics(self) -> str:
        return f"http://127.0.0.1:{self.env['SUPERVISOR_METRICS_PORT']}/metrics"

    def log(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def logs_tail(self, lines: int = 15) -> str:
        out = []
        for path in sorted((self.state_dir / "logs").glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)

    # -- faults -----------------------------------------------------------------------------------------------

    def pid(self, name: str) -> int:
        pid = self.status()[name]["pid"]
        assert pid, f"{name} is not running"
        return int(pid)

    def signal(self, name: str, sig: signal.Signals = signal.SIGKILL) -> int:
        """Send `sig` to a component by its status name (`router`, `kafka-2`, `postgres`, `supervisor`)."""
        pid = self.pid(name)
        os.kill(pid, sig)
        return pid

    def broker_signal(self, node_id: int, sig: signal.Signals) -> int:
        return kafka.signal_node(self.settings.stack, node_id, sig)

    def restart_broker(self, node_id: int) -> int:
        """Stop one node gracefully (it is marked stopped: the supervisor leaves it) and start it again."""
        kafka.stop_node(self.settings.stack, node_id)
        return kafka.start_node(self.settings.stack, node_id)

    async def leader_of(self, topic: str, partition: int) -> int:
        return (await partition_leaders(self.bootstrap, topic))[partition]

    # -- waiting ----------------------------------------------------------------------------------------------

    def wait_component(
        self, name: str, predicate: Callable[[Component], bool], timeout: float, what: str = ""
    ) -> Component:
        deadline = time.monotonic() + timeout
        while True:
            component = self.status()[name]
            if predicate(component):
                return component
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{name} not {what or 'as expected'} within {timeout} s: {component}\n{self.logs_tail()}"
                )
            time.sleep(0.25)

    async def await_component(
        self, name: str, predicate: Callable[[Component], bool], timeout: float, what: str = ""
    ) -> Component:
        return await asyncio.to_thread(self.wait_component, name, predicate, timeout, what)
