"""Supervision under `oee up`, as an operator meets it: a service SIGKILLed comes back by itself and is
counted; one SIGSTOPped (alive, answering nothing) is killed as hung by the liveness probe and comes back,
counted apart; PostgreSQL SIGKILLed comes back; a killed supervisor's services are replaced, never doubled; a
service that cannot start is reported as crash-looping, loudly. Each test runs a stack of its own (state
directory, ports, PostgreSQL) on the suite's broker, under topics of its own."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from events.topics import Topics
from services.config import Settings
from services.stack.procs import pid_alive
from tests.e2e.harness import LogReader, assert_lifecycle, free_port
from tests.e2e.stackrun import StackRun

pytestmark = pytest.mark.e2e

SERVICES = ("venue", "router", "projector", "api")
ORDER = {"baseToken": "SOL", "quoteToken": "USDC", "side": "buy", "amountIn": 150, "slippageBps": 100}


LOG_MAX = 4096  # the smallest allowed: a router's start alone writes more than that
# Liveness probes shortened so that a stopped service is found in seconds, not the default ~25 s: 4 misses of
# 2 s each, 1 s apart, still need several seconds of total silence (load does not make that).
PROBES = {
    "SUPERVISOR_PROBE_INTERVAL_S": "1",
    "SUPERVISOR_PROBE_TIMEOUT_S": "2",
    "SUPERVISOR_PROBE_FAILURES": "4",
    "SUPERVISOR_PROBE_GRACE_S": "15",
}


@pytest.fixture
def run(infra: Settings, tmp_path: Path) -> Iterator[StackRun]:
    stack = StackRun.create(
        tmp_path,
        shared_kafka=infra.bootstrap_servers,
        OEE_LOG_MAX_BYTES=str(LOG_MAX),
        OEE_LOG_BACKUPS="2",
        PROJECTOR_METRICS_PORT=str(free_port()),  # the projector's liveness probe asks its /metrics
        **PROBES,
    )
    yield stack
    stack.down()


async def post_order(api: str) -> str:
    async with httpx.AsyncClient(base_url=api, timeout=10) as client:
        answer = await client.post("/api/orders/execute", json=ORDER)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["orderId"])


async def assert_completes(run: StackRun, order_id: str, timeout: float = 90) -> None:
    """A terminal event in the log, then the same terminal status in the projection."""
    topics = Topics.with_prefix(run.settings.topic_prefix)
    async with LogReader(run.bootstrap, topics.events) as log:
        await log.wait_terminal([order_id], timeout)
        assert_lifecycle(log.by_order[order_id])
        final = log.by_order[order_id][-1]
    conn = await asyncpg.connect(run.database_url)
    try:
        deadline = time.monotonic() + timeout
        while (
            status := await conn.fetchval("SELECT status FROM orders WHERE id = $1", order_id)
        ) is None or (status not in ("confirmed", "failed")):
            assert time.monotonic() < deadline, (
                f"order {order_id} not projected ({status}):\n{run.logs_tail()}"
            )
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    assert status == {"OrderConfirmed": "confirmed", "OrderFailed": "failed"}[final.type]


def scrape(url: str) -> dict[tuple[str, str], float]:
    text = httpx.get(url, timeout=5).text
    return {
        (s.name, s.labels.get("component", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("oee_supervisor")
    }


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


async def test_killed_or_hung_services_and_database_come_back_counted_and_a_killed_supervisor_is_replaced(
    run: StackRun,
) -> None:
    shown = run.up()
    first = run.status()
    secret_file = run.state_dir / "venue.secret"
    secret = secret_file.read_text().strip()
    assert len(bytes.fromhex(secret)) >= 16 and secret_file.stat().st_mode & 0o777 == 0o600
    got = {name: environ(first[name]["pid"]).get("VENUE_SECRET") for name in SERVICES}
    assert got == {"venue": secret, "router": secret, "projector": None, "api": None}, "only venue and router"
    assert first["supervisor"]["state"] == "running"
    assert all(first[name]["state"] == "running" and first[name]["restarts"] == 0 for name in SERVICES)

    for name in (*SERVICES, "postgres"):
        old = run.signal(name, signal.SIGKILL)
        back = await run.await_component(
            name,
            lambda c, old=old: c["state"] == "running" and c["pid"] not in (None, old) and c["restarts"] == 1,
            timeout=60,
            what="running again with one restart",
        )
        if name != "postgres":
            assert back["last_exit"] == "killed by SIGKILL", back
    await assert_completes(run, await post_order(run.api))

    counted = scrape(run.supervisor_metrics)
    for name in (*SERVICES, "postgres"):
        assert counted[("oee_supervisor_restarts_total", name)] == 1, name
        assert counted[("oee_supervisor_component_up", name)] == 1, name
    assert scrape(f"{run.api}/metrics")[("oee_supervisor_restarts_total", "router")] == 1, (
        "the API shows it too"
    )
    # The review's case: the projector SIGSTOPped while orders flow. Alive, it never exits; the liveness probe
    # finds it silent, the supervisor SIGKILLs it and restarts it, and the order is projected after all.
    stopped = run.signal("projector", signal.SIGSTOP)
    during = await post_order(run.api)
    hung = await run.await_component(
        "projector",
        lambda c: c["state"] == "running" and c["pid"] not in (None, stopped) and c["hung"] == 1,
        timeout=60,
        what="killed as hung and running again",
    )
    assert not pid_alive(stopped)
    assert hung["restarts"] == 2 and hung["last_exit"] == "hung (no answer to 4 probes), killed by SIGKILL", (
        hung
    )
    await assert_completes(run, during)
    said = [line for line in run.log("supervisor").read_text().splitlines() if "liveness probe" in line]
    assert any(
        " ERROR " in line
        and "projector did not answer its liveness probe 4 times in a row: killing it" in line
        for line in said
    ), said
    counted = scrape(run.supervisor_metrics)
    assert counted[("oee_supervisor_hung_total", "projector")] == 1
    assert all(counted[("oee_supervisor_hung_total", name)] == 0 for name in ("venue", "api")), (
        "no false alarm"
    )
    assert ("oee_supervisor_hung_total", "router") not in counted, "a metrics port of 0 is not probed"

    statuses, text = run.status_cli()
    assert statuses["router"]["restarts"] == 1
    assert statuses["projector"]["hung"] == 1 and statuses["venue"]["hung"] == 0
    assert "hung 1" in next(line for line in text.splitlines() if line.startswith("projector")), text
    assert "last exit: killed by SIGKILL" in next(
        line for line in text.splitlines() if line.startswith("router")
    )

    # The supervisor itself SIGKILLed: its services run on, unsupervised, until the next `up` replaces them.
    orphans = {name: statuses[name]["pid"] for name in SERVICES}
    run.signal("supervisor", signal.SIGKILL)
    await asyncio.to_thread(lambda: run.wait_component("supervisor", lambda c: c["state"] == "stopped", 10))
    unsupervised = run.status()
    assert {name: unsupervised[name]["pid"] for name in SERVICES} == orphans
    assert not any(unsupervised[name]["supervised"] for name in SERVICES)
    assert "unsupervised" in run.oee("status").stdout

    run.up()
    replaced = run.status()
    assert not [name for name, pid in orphans.items() if pid_alive(pid)], "no service runs twice"
    assert all(
        replaced[name]["state"] == "running" and replaced[name]["pid"] != orphans[name] for name in SERVICES
    )
    await assert_completes(run, await post_order(run.api))

    down = run.oee("down")
    assert down.returncode == 0 and "supervisor" in down.stdout, down.stdout + down.stderr
    assert not any(pid_alive(replaced[name]["pid"]) for name in (*SERVICES, "supervisor", "postgres"))

    everything_said = (
        shown + text + "".join(p.read_text(errors="replace") for p in run.state_dir.glob("logs/*"))
    )
    assert secret not in everything_said, "the venue secret is never printed or logged"

    # Three router starts wrote well over 4 KiB: its log rotated, and no log of ours outgrew its bound.
    logs = run.state_dir / "logs"
    assert (logs / "router.log.1").exists(), sorted(p.name for p in logs.iterdir())
    for name in (*SERVICES, "supervisor"):
        family = sorted(logs.glob(f"{name}.log*"))
        assert [p.name for p in family if p.name.endswith(".3")] == [], family
        assert all(p.stat().st_size <= LOG_MAX for p in family), [(p.name, p.stat().st_size) for p in family]


async def test_a_service_that_exits_at_once_is_reported_as_crash_looping(
    infra: Settings, tmp_path: Path
) -> None:
    # A venue told to listen on an address this machine does not have exits at start, every time: nothing a
    # restart can fix. (The router, which reads the same VENUE_* settings, runs on; it cannot reach it.)
    run = StackRun.create(
        tmp_path,
        shared_kafka=infra.bootstrap_servers,
        shared_database=infra.database_url,
        VENUE_HOST="203.0.113.1",  # TEST-NET-3: never a local address
    )
    try:
        up = run.oee("up")
        assert up.returncode != 0, up.stdout
        message = up.stderr.strip()
        assert len(message.splitlines()) == 1, message
        assert "venue is crash-looping" in message and "venue.log" in message, message

        venue = run.status()["venue"]
        assert venue["crash_loop"] and venue["recent_restarts"] >= 5 and venue["last_exit"] == "exit code 3"
        others = run.status()
        assert all(
            others[name]["state"] in ("running", "starting") for name in ("router", "projector", "api")
        )
        text = run.oee("status").stdout
        assert "CRASH-LOOP" in next(line for line in text.splitlines() if line.startswith("venue")), text
        assert scrape(run.supervisor_metrics)[("oee_supervisor_crash_looping", "venue")] == 1
        errors = [line for line in run.log("supervisor").read_text().splitlines() if " ERROR " in line]
        assert errors and "venue is crash-looping" in errors[-1] and "exit code 3" in errors[-1], errors
        assert "cannot assign requested address" in errors[-1], "the child's last error line says why"

        again = run.oee("up")
        assert again.returncode != 0 and "venue is crash-looping" in again.stderr, "a second up says so too"
    finally:
        down = run.oee("down")
        assert down.returncode == 0, down.stderr
    assert run.status()["supervisor"]["state"] == "stopped"
