"""What building the read API's queries with SQLAlchemy Core costs: this tree's `oee api` against a baseline's.

    uv run python -m bench.bench_reads --baseline DIR [--orders 40000] [--requests 2000] [--rounds 3]
    uv run python -m bench.bench_reads --micro --baseline DIR     statement building and import, in process

DIR is a clean snapshot of the code to compare with (`git archive <commit> | tar -x -C DIR`). Both APIs run
as subprocesses (`python -P -m services.cli api`, each with its own tree first on PYTHONPATH; AUTH=off,
access log and lag monitor off) on the same projection schema, filled with `--orders` orders over four
accounts (a quarter are the API's `local` account's). Each round runs every scenario (a filtered list, a
next page, one order) against both, in alternating order, `--requests` GETs per scenario from
`--concurrency` aiohttp workers in this process; each API process's CPU is read from /proc around each
scenario (CPU per request is the steadier figure on a shared machine). Prints per scenario the latency and
the CPU per request of both and their ratio; writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.common import (
    REPO,
    CpuMeter,
    create_topics,
    latency_summary,
    loadavg,
    machine,
    print_table,
    settings_for,
    write_result,
)
from events.topics import Topics
from projections.migrations import migrate, quote_ident
from tests.e2e.harness import Proc, free_port, wait_http

T0 = "2025-03-14T00:00:00Z"
ACCOUNTS = ("local", "alice", "bob", "carol")

# Orders spread over a day, statuses, types, sides and venues drawn at random (seeded); quotes as the router writes them (the view
# parses them), an open order's limit price, a confirmed one's execution.
FILL = """
INSERT INTO {s}.orders (id, type, base_token, quote_token, side, amount_in, slippage_bps, status,
    selected_dex, quotes, executed_price, amount_out, tx_hash, attempts, created_at, updated_at, last_seq,
    last_topic, last_partition, last_offset, last_event_id, route_reason, client_order_id, account_id,
    limit_price)
SELECT gen_random_uuid(), (ARRAY['market', 'market', 'limit'])[1 + floor(random() * 3)::int], 'SOL', 'USDC',
    (ARRAY['buy', 'sell'])[1 + floor(random() * 2)::int], 1.5, 100,
    (ARRAY['confirmed', 'confirmed', 'confirmed', 'failed', 'open', 'routing'])[1 + floor(random() * 6)::int],
    (ARRAY['raydium', 'meteora'])[1 + floor(random() * 2)::int],
    '[{{"venue": "raydium", "price": 150.1, "fee_bps": 25, "amount_in": 1.5, "amount_out": 224.6,
       "price_impact_bps": 3.1, "quoted_at": "2025-03-14T09:00:00.000Z"}},
      {{"venue": "meteora", "price": 150.3, "fee_bps": 30, "amount_in": 1.5, "amount_out": 224.8,
       "price_impact_bps": 2.9, "quoted_at": "2025-03-14T09:00:00.000Z"}}]'::jsonb,
    150.2, 224.7, md5(i::text), 1,
    $1::timestamptz + make_interval(secs => i * 86400.0 / $2), $1::timestamptz + make_interval(secs => i),
    5, $3, i % 12, i, gen_random_uuid(), 'best price net of fees', md5(i::text),
    (ARRAY['local', 'alice', 'bob', 'carol'])[1 + i % 4], 151.0
FROM generate_series(1, $2) AS i
"""
POSITIONS = """
INSERT INTO {s}.projector_positions (projection, topic, partition, next_offset, end_offset, checked_at)
SELECT 'orders', $1, p, 1000, 1002, now() FROM generate_series(0, 11) AS p
"""


async def fill(url: str, schema: str, topic: str, orders: int) -> str:
    """Migrate `schema`, fill it; return one of `local`'s order ids (for the single-order scenario)."""
    await migrate(url, schema)
    conn = await asyncpg.connect(url)
    try:
        s = quote_ident(schema)
        await conn.execute("SELECT setseed(0.42)")  # the same orders every run
        await conn.execute(FILL.format(s=s), datetime.fromisoformat(T0), orders, topic)
        await conn.execute(POSITIONS.format(s=s), topic)
        await conn.execute(f"ANALYZE {s}.orders")
        return str(await conn.fetchval(f"SELECT id FROM {s}.orders WHERE account_id = 'local' LIMIT 1"))
    finally:
        await conn.close()


def scenarios(order_id: str) -> dict[str, str]:
    return {
        "list": "/api/orders",
        "status": "/api/orders?status=confirmed",
        "open limit": "/api/orders?status=open&type=limit",
        "side+venue": "/api/orders?side=buy&venue=raydium",
        "from+to": "/api/orders?from=2025-03-14T06:00:00Z&to=2025-03-14T18:00:00Z",
        "200 failed": "/api/orders?status=failed&limit=200",
        "next page": "/api/orders?status=confirmed&cursor={cursor}",
        "one order": f"/api/orders/{order_id}",
    }


def api_proc(tree: Path, port: int, schema: str, prefix: str, tmp: Path, name: str) -> Proc:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(tree),
        PORT=str(port),
        PROJECTION_SCHEMA=schema,
        OEE_TOPIC_PREFIX=prefix,
        OEE_STATE_DIR=str(tmp / name),
        AUTH="off",
        ACCESS_LOG="off",
        LAG_INTERVAL_MS="0",
        LOG_LEVEL="warning",
        ACCOUNT_ORDER_RATE="0",
        ACCOUNT_MAX_OPEN_ORDERS="0",
    )
    # -P: the tree on PYTHONPATH comes first, not the current directory (the editable install's tree)
    argv = [sys.executable, "-P", "-m", "services.cli", "api"]
    return Proc(name, argv, env, tmp / f"{name}.log")


async def hammer(session: aiohttp.ClientSession, url: str, requests: int, concurrency: int) -> list[float]:
    left = iter(range(requests))
    took: list[float] = []

    async def worker() -> None:
        for _ in left:
            t = time.perf_counter()
            async with session.get(url) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"{url}: {r.status} {await r.text()}")
            took.append(time.perf_counter() - t)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return took


async def run(args: argparse.Namespace) -> None:
    settings = settings_for(f"breads{uuid.uuid4().hex[:8]}.")
    create_topics(settings, 12)
    schema = f"bench_reads_{uuid.uuid4().hex[:8]}"
    topic = Topics.with_prefix(settings.topic_prefix).events
    order_id = await fill(settings.database_url, schema, topic, args.orders)
    tmp = Path(tempfile.mkdtemp(prefix="bench-reads-"))
    trees = {"baseline": args.baseline, "core": REPO}
    procs, urls = {}, {}
    for name, tree in trees.items():
        port = free_port()
        urls[name] = f"http://127.0.0.1:{port}"
        procs[name] = api_proc(tree, port, schema, settings.topic_prefix, tmp, name).start()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {name: {} for name in trees}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency)) as session:
            paths = scenarios(order_id)
            for name in trees:
                await wait_http(f"{urls[name]}/health", procs[name])
                async with session.get(f"{urls[name]}{paths['status']}") as r:
                    cursor = (await r.json())["nextCursor"]
                for path in paths.values():  # connections, prepared statements, compiled shapes
                    await hammer(session, urls[name] + path.format(cursor=cursor), 50, args.concurrency)
            for n in range(args.rounds):
                order = list(trees) if n % 2 == 0 else list(reversed(trees))
                for label, path in paths.items():
                    for name in order:
                        meter = CpuMeter({"api": procs[name].pid}).start()
                        took = await hammer(
                            session, urls[name] + path.format(cursor=cursor), args.requests, args.concurrency
                        )
                        cpu = meter.stop()["cpu_s"]["api"]
                        row = {**latency_summary(took), "cpu_us": round(cpu * 1e6 / args.requests, 1)}
                        results[name].setdefault(label, []).append(row)
                print(f"round {n + 1} done (load {loadavg()[0]})")
    finally:
        for proc in procs.values():
            proc.stop()
        conn = await asyncpg.connect(settings.database_url)
        try:
            await conn.execute(f"DROP SCHEMA {quote_ident(schema)} CASCADE")
        finally:
            await conn.close()
    report(results, vars(args))


def report(results: dict[str, dict[str, list[dict[str, Any]]]], params: dict[str, Any]) -> None:
    rows = []
    ratios: dict[str, float] = {}
    for label in results["core"]:
        base, core = results["baseline"][label], results["core"][label]

        def med(rs: list[dict[str, Any]], key: str) -> float:
            return float(statistics.median(r[key] for r in rs))

        ratios[label] = med(core, "cpu_us") / med(base, "cpu_us")
        rows.append([
            label,
            f"{med(base, 'p50_ms'):.2f} / {med(base, 'p99_ms'):.2f}",
            f"{med(core, 'p50_ms'):.2f} / {med(core, 'p99_ms'):.2f}",
            f"{med(base, 'cpu_us'):.0f}",
            f"{med(core, 'cpu_us'):.0f}",
            f"{ratios[label]:.3f}",
        ])  # fmt: skip
    print()
    header = ["scenario", "baseline p50 / p99 ms", "core p50 / p99 ms", "baseline CPU us/req",
              "core CPU us/req", "core/baseline CPU"]  # fmt: skip
    print_table(rows, header)
    print(f"core/baseline CPU per request: median {statistics.median(ratios.values()):.3f}")
    path = write_result("reads", {"machine": machine(), **params, "results": results, "cpu_ratios": ratios})
    print(f"written: {path}")


def micro(baseline: Path, calls: int) -> None:
    """Per call, in this process: the baseline's string-built list SQL, this tree's kept statement, and
    building + compiling a statement (what every request would pay without the cache); then the CPU an
    interpreter spends importing the API in each tree (SQLAlchemy's import is paid once per process)."""
    from services.query.params import list_query, params_of
    from services.query.statements import OrderPages, Shape, compile_for, page_select

    spec = importlib.util.spec_from_file_location("baseline_reads", baseline / "services/query/reads.py")
    assert spec is not None and spec.loader is not None
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    query = list_query(params_of([("status", "confirmed"), ("venue", "raydium"), ("from", T0)]))
    pages = OrderPages("public")
    shape = Shape.of(query)
    timings = {
        "baseline list_sql (f-strings)": lambda: old.list_sql('"public"', query, "local"),
        "core, kept statement (per request)": lambda: pages.statement(query, "local"),
        "core, select() built, not compiled": lambda: page_select(shape),
        "core, built and compiled (first use of a shape)": lambda: compile_for(page_select(shape), "public"),
    }
    rows = []
    for label, call in timings.items():
        n = calls if "compiled" not in label else max(1, calls // 50)
        best = min(timeit.repeat(call, number=n, repeat=5)) / n
        rows.append([label, f"{best * 1e6:.1f}"])
    for name, tree in (("baseline", baseline), ("core", REPO)):
        cpu = []
        for _ in range(5):
            before = os.times()
            env = dict(os.environ, PYTHONPATH=str(tree))
            code = "import services.api.app, services.query.reads"
            subprocess.run([sys.executable, "-P", "-c", code], env=env, check=True)
            after = os.times()
            cpu.append(
                after.children_user + after.children_system - before.children_user - before.children_system
            )
        rows.append(
            [f"{name}: import the API (CPU of a fresh interpreter)", f"{statistics.median(cpu) * 1e6:,.0f}"]
        )
    print_table(rows, ["what", "us"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", required=True, help="a snapshot of the code to compare with")
    parser.add_argument("--orders", type=int, default=40_000)
    parser.add_argument("--requests", type=int, default=2000, help="GETs per scenario, server and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--micro", action="store_true")
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    args.baseline = Path(args.baseline).resolve()
    if args.micro:
        micro(args.baseline, args.calls)
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
