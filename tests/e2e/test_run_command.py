"""`oee up` as a newcomer runs it: everything starts, an order posted over HTTP ends in the log,
`status` shows what runs where, a second `up` finds it all running, `down` stops exactly that."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from events.topics import Topics
from services.stack.procs import pid_alive
from tests.e2e.harness import LogReader, assert_lifecycle, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")}
    env.update(
        OEE_STATE_DIR=str(tmp_path / "state"),
        OEE_KAFKA_PORT=str(free_port()),
        OEE_KAFKA_CONTROLLER_PORT=str(free_port()),
        OEE_PG_PORT=str(free_port()),
        PORT=str(free_port()),
        VENUE_PORT=str(free_port()),
        VENUE_EXEC_LATENCY_MS="200",
        OEE_PARTITIONS="3",
    )
    yield env
    oee(env, "down")


def oee(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True, timeout=240
    )


def _pids(status: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+running pid (\d+)", status, re.M)}


async def test_up_serves_orders_end_to_end_and_down_stops_it_all(env: dict[str, str]) -> None:
    up = oee(env, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    status = oee(env, "status").stdout
    pids = _pids(status)
    assert set(pids) >= {"kafka", "postgres", "venue", "router", "api"}, status

    api = f"http://127.0.0.1:{env['PORT']}"
    async with httpx.AsyncClient(base_url=api, timeout=10) as client:
        assert (await client.get("/health")).json() == {"status": "ok"}
        body = {"baseToken": "SOL", "quoteToken": "USDC", "side": "buy", "amountIn": 150, "slippageBps": 100}
        answer = await client.post("/api/orders/execute", json=body)
        assert answer.status_code == 201, answer.text
        order_id = answer.json()["orderId"]
        assert answer.json()["wsUrl"] == f"/ws/orders/{order_id}"

    bootstrap = f"127.0.0.1:{env['OEE_KAFKA_PORT']}"
    async with LogReader(bootstrap, Topics.with_prefix().events) as log:
        await log.wait_terminal([order_id], 90)
        assert_lifecycle(log.by_order[order_id])
        assert log.by_order[order_id][-1].type == "OrderConfirmed"

    again = oee(env, "up")
    assert again.returncode == 0, again.stderr
    assert _pids(oee(env, "status").stdout) == pids, "a second up finds the running system"

    # Other settings cannot apply to what runs: said by name (never by value), nothing changed, exit 1.
    other = oee(dict(env, AUTH="keys", VENUE_EXEC_LATENCY_MS="987"), "up")
    assert other.returncode == 1 and other.stdout == "", other.stdout + other.stderr
    message = other.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert "already running with other settings" in message and "(AUTH, VENUE_EXEC_LATENCY_MS)" in message
    assert "`oee down` then `oee up`" in message and "987" not in message and "keys" not in message
    assert _pids(oee(env, "status").stdout) == pids, "nothing restarted"

    down = oee(env, "down", "--purge")
    assert down.returncode == 0, down.stderr
    assert not [name for name, pid in pids.items() if pid_alive(pid)], "down stops everything up started"
    assert not _pids(oee(env, "status").stdout)
    assert not os.listdir(env["OEE_STATE_DIR"]), (
        "purged: nothing of the stack's is left, and status made nothing"
    )


def test_a_taken_service_port_fails_before_anything_starts(env: dict[str, str]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(env["PORT"])))
        squatter.listen()
        up = oee(env, "up")
    assert up.returncode == 1, up.stdout + up.stderr
    assert up.stderr.strip() == (
        f"oee up: port {env['PORT']} for api is already in use by another process; stop it or set PORT"
    )
    assert up.stdout == "" and not _pids(oee(env, "status").stdout), "no broker or database was started"
