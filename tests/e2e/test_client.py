"""The client and `oee order` against the running system: `oee api`, `oee router`, `oee venue` and
`oee projector` as subprocesses under AUTH=keys, on this test's topics and projection schema."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import orjson
import pytest

from events.topics import Topics
from services.accounts import store
from services.client import ApiError, AsyncClient, Client
from services.config import Settings
from tests.e2e.harness import Proc, free_port, service, stop_all, wait_http, wait_log

pytestmark = pytest.mark.e2e


@dataclasses.dataclass
class Running:
    url: str
    key: str
    settings: Settings
    procs: list[Proc]

    def oee(
        self, *args: str, key: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, OEE_API_KEY=self.key if key is None else key)
        return subprocess.run(
            [sys.executable, "-m", "services.cli", "order", "--url", self.url, *args],
            env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip


@pytest.fixture
async def running(infra: Settings, topics: Topics, tmp_path: Path, unique: str) -> AsyncIterator[Running]:
    conn = await asyncpg.connect(infra.database_url)
    try:
        trader = await store.create_account(conn, f"client-{unique}")
    finally:
        await conn.close()
    settings = dataclasses.replace(infra, topic_prefix=topics.events.removesuffix("orders.events"))
    schema = f"client_{unique}"
    venue_port, api_port = free_port(), free_port()
    common = {"PROJECTION_SCHEMA": schema, "VENUE_SEED": "3", "VENUE_EXEC_LATENCY_MS": "200"}
    venue = service("venue", settings, tmp_path, {**common, "VENUE_PORT": str(venue_port)}).start()
    router_env = {**common, "VENUE_URL": f"http://127.0.0.1:{venue_port}", "ROUTER_METRICS_PORT": "0"}
    router = service("router", settings, tmp_path, router_env).start()
    projector = service("projector", settings, tmp_path, {**common, "PROJECTOR_METRICS_PORT": "0"}).start()
    api = service("api", settings, tmp_path, {**common, "PORT": str(api_port), "AUTH": "keys"}).start()
    procs = [venue, router, projector, api]
    try:
        await wait_http(f"http://127.0.0.1:{venue_port}/health", venue)
        await wait_http(f"http://127.0.0.1:{api_port}/health", api)
        await wait_log(router, "partition assigned", count=3)
        await wait_log(projector, "partition assigned")
        await wait_log(api, "log tail positioned")
        yield Running(f"http://127.0.0.1:{api_port}", trader.key, settings, procs)
    finally:
        stop_all(procs)
        conn = await asyncpg.connect(infra.database_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def test_the_client_places_watches_reads_and_lists_an_order(running: Running, unique: str) -> None:
    async with AsyncClient(running.url, running.key) as api:
        accepted = await api.place("sell", 1.5, "SOL", "USDC", idempotency_key=f"k-{unique}")
        assert accepted.status == "pending" and accepted.ws_url == f"/ws/orders/{accepted.order_id}"
        frames = [f async for f in api.watch(accepted.order_id)]
        assert [f.seq for f in frames] == list(range(1, len(frames) + 1))
        assert [f.status for f in frames] == ["pending", "routing", "building", "submitted", "confirmed"]
        last = frames[-1]
        order = await api.get(accepted.order_id, min_seq=last.seq, wait_ms=10_000)
        assert order.status == "confirmed" and order.tx_hash == last.data["txHash"]
        assert order.projection is not None
        resumed = [f.seq async for f in api.watch(accepted.order_id, from_seq=3)]
        assert resumed == [4, 5]
        page = await api.list(status="confirmed")
        assert accepted.order_id in [o.order_id for o in page.orders]
        events = await api.events(accepted.order_id)
        assert [e.seq for e in events.events] == [1, 2, 3, 4, 5]
        again = await api.place("sell", 1.5, "SOL", "USDC", idempotency_key=f"k-{unique}")
        assert again.order_id == accepted.order_id, "the same key names the same order"
        # Errors carry status, field and reason.
        with pytest.raises(ApiError) as bad:
            await api.place("sell", -1, "SOL", "SOL")
        assert bad.value.status == 400 and {p.field for p in bad.value.details} == {"amountIn", "quoteToken"}
        assert bad.value.field == "quoteToken" or bad.value.field == "amountIn"
        with pytest.raises(ApiError) as missing:
            await api.get("0b6f3e9a-2d1c-4f7e-9a53-8c1d2e4f5a6b")
        assert missing.value.status == 404
        ended = await api.cancel(accepted.order_id)  # confirmed already: nothing to cancel, nothing appended
        assert ended.status == "confirmed" and ended.cancel.startswith("nothing to cancel")
        assert ended.request_id is None
        with pytest.raises(ApiError) as unknown:
            await api.cancel("0b6f3e9a-2d1c-4f7e-9a53-8c1d2e4f5a6b")
        assert unknown.value.status == 404
    async with AsyncClient(running.url, api_key="") as anonymous:
        with pytest.raises(ApiError) as unauthorized:
            await anonymous.list()
        assert unauthorized.value.status == 401
        with pytest.raises(ApiError) as refused:
            await anext(anonymous.watch(accepted.order_id))
        assert refused.value.status == 401


async def test_the_blocking_client_trades_too(running: Running) -> None:
    def trade() -> tuple[str, list[str], str]:
        with Client(running.url, running.key) as api:
            accepted = api.place("buy", 100, "SOL", "USDC", slippage_bps=300)
            statuses = [f.status for f in api.watch(accepted.order_id)]
            return accepted.order_id, statuses, api.get(accepted.order_id, min_seq=5, wait_ms=10_000).status

    order_id, statuses, final = await asyncio.to_thread(trade)
    assert len(order_id) == 36
    assert statuses[-1] == final and final in ("confirmed", "failed") and len(statuses) == 5


async def test_oee_order_trades_from_a_terminal(running: Running) -> None:
    placed = await asyncio.to_thread(running.oee, "place", "sell", "2", "SOL", "USDC", "--slippage", "150")
    assert placed.returncode == 0, placed.stderr
    order_id = placed.stdout.strip().splitlines()[-1]
    assert len(order_id) == 36 and "pending" in placed.stdout
    watched = await asyncio.to_thread(running.oee, "watch", order_id)
    assert watched.returncode == 0, watched.stderr
    lines = watched.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["#1", "#2", "#3", "#4", "#5"]
    assert "confirmed" in lines[-1] and "tx " in lines[-1]
    got = await asyncio.to_thread(running.oee, "get", order_id, "--min-seq", "5")
    assert got.returncode == 0 and "confirmed" in got.stdout and order_id in got.stdout
    listed = await asyncio.to_thread(running.oee, "--json", "list", "--limit", "5")
    assert listed.returncode == 0, listed.stderr
    assert order_id in [o["orderId"] for o in orjson.loads(listed.stdout)["orders"]]
    as_json = await asyncio.to_thread(running.oee, "--json", "watch", order_id, "--from-seq", "4")
    assert [orjson.loads(line)["seq"] for line in as_json.stdout.splitlines()] == [5]
    # Errors: one line on stderr, exit 1, never a traceback.
    cases = {
        "bad order": (("place", "sell", "-1", "SOL", "USDC"), None, "400"),
        "no key": (("list",), "", "401"),
        "unknown order": (("get", "0b6f3e9a-2d1c-4f7e-9a53-8c1d2e4f5a6b"), None, "404"),
        "cancel of an unknown order": (("cancel", "0b6f3e9a-2d1c-4f7e-9a53-8c1d2e4f5a6b"), None, "404"),
    }
    for what, (args, key, expected) in cases.items():
        failed = await asyncio.to_thread(running.oee, *args, key=key)
        assert failed.returncode == 1, (what, failed.stdout, failed.stderr)
        assert len(failed.stderr.strip().splitlines()) == 1 and expected in failed.stderr, (
            what,
            failed.stderr,
        )
        assert "Traceback" not in failed.stderr
    bad = await asyncio.to_thread(running.oee, "place", "sell", "-1", "SOL", "USDC")
    assert "amountIn" in bad.stderr
