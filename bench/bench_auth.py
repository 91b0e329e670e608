"""What authentication costs the ingress: `oee api` under AUTH=keys against AUTH=off, in the same run.

    uv run python -m bench.bench_auth [--orders 4000] [--rounds 3] [--concurrency 64] [--keyed]
    uv run python -m bench.bench_auth --micro [--requests 20000]   the edge alone, in process

Two `oee api` processes on topics of their own (no router: the orders stay in the intake topic), one per
mode, the same account limits (off in both: this measures authentication, not the limits). Rounds alternate
off, keys, off, keys... so a noisy neighbour hits both alike; each round is `--orders` POSTs from the
aiohttp load generator (closed loop, `--concurrency` in flight) in its own process. `--keyed` sends an
Idempotency-Key with every order (the durable key store then costs both modes the same two statements).
Prints orders/s, latency and the API process's CPU per order for each round, and keys/off per pair of rounds
(CPU per order is the steadier figure on a shared machine: it does not depend on who else had the cores);
writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

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
from projections.migrations import migrate, migrate_state
from services.accounts import store
from tests.e2e.harness import free_port, service, wait_http


def _rows(path: Path) -> list[list[Any]]:
    rows: list[list[Any]] = json.loads(path.read_text())["rows"]
    return rows


async def load(
    url: str, orders: int, concurrency: int, out: Path, headers: list[str], keys: str | None = None
) -> dict[str, Any]:
    flags = [f"--header={h}" for h in headers] + ([f"--keys={keys}"] if keys else [])
    argv = [sys.executable, "-m", "bench.loadgen", f"{url}/api/orders/execute", "--out", str(out)]
    proc = await asyncio.create_subprocess_exec(
        *argv, "--orders", str(orders), "--concurrency", str(concurrency), *flags, cwd=REPO
    )
    if await proc.wait() != 0:
        raise RuntimeError("bench.loadgen failed")
    rows = _rows(out)
    ok = [r for r in rows if r[3] == 201]
    if len(ok) != len(rows):
        statuses = sorted({r[3] for r in rows})
        raise RuntimeError(f"{len(rows) - len(ok)} of {len(rows)} answers were not 201: {statuses}")
    seconds = max(r[2] for r in rows) - min(r[1] for r in rows)
    return {"orders_per_s": round(len(rows) / seconds, 1), **latency_summary([r[2] - r[1] for r in rows])}


async def run(orders: int, rounds: int, concurrency: int, keyed: bool) -> None:
    settings = settings_for(f"bauth{uuid.uuid4().hex[:8]}.")
    create_topics(settings, 12)
    await migrate(settings.database_url)
    await migrate_state(settings.database_url)
    conn = await asyncpg.connect(settings.database_url)
    try:
        key = await store.create_account(conn, f"bench-{uuid.uuid4().hex[:8]}")
    finally:
        await conn.close()
    tmp = Path(tempfile.mkdtemp(prefix="bench-auth-"))
    common = {"LAG_INTERVAL_MS": "0", "ACCOUNT_ORDER_RATE": "0", "ACCOUNT_MAX_OPEN_ORDERS": "0"}
    modes: dict[str, list[str]] = {"off": [], "keys": [f"Authorization: Bearer {key.key}"]}
    procs, urls = {}, {}
    for mode in modes:
        port = free_port()
        urls[mode] = f"http://127.0.0.1:{port}"
        procs[mode] = service("api", settings, tmp, {**common, "AUTH": mode, "PORT": str(port)}).start()
    results: dict[str, list[dict[str, Any]]] = {"off": [], "keys": []}
    try:
        for mode in modes:
            await wait_http(f"{urls[mode]}/health", procs[mode])
            await load(urls[mode], 500, concurrency, tmp / "warm.json", modes[mode])  # connections, caches
        for n in range(rounds):
            for mode in modes:
                tag = f"{settings.topic_prefix}{mode}-{n}" if keyed else None
                meter = CpuMeter({"api": procs[mode].pid}).start()
                out = tmp / f"{mode}-{n}.json"
                result = await load(urls[mode], orders, concurrency, out, modes[mode], tag)
                result["api_cpu_ms_per_order"] = round(meter.stop()["cpu_s"]["api"] * 1000 / orders, 3)
                result["loadavg"] = loadavg()[0]
                results[mode].append(result)
                print(f"round {n + 1} {mode:<4}: {result['orders_per_s']:>7,.0f} orders/s, "
                      f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
                      f"api {result['api_cpu_ms_per_order']} ms CPU/order (load {result['loadavg']})")  # fmt: skip
    finally:
        for proc in procs.values():
            proc.stop()
    report(results, {"orders": orders, "rounds": rounds, "concurrency": concurrency, "keyed": keyed})


def report(results: dict[str, list[dict[str, Any]]], params: dict[str, Any]) -> None:
    pairs = list(zip(results["off"], results["keys"], strict=True))
    ratios = [k["orders_per_s"] / o["orders_per_s"] for o, k in pairs]
    cpu = [k["api_cpu_ms_per_order"] / o["api_cpu_ms_per_order"] for o, k in pairs]
    rows = [
        [str(i + 1), f"{o['orders_per_s']:,.0f}", f"{k['orders_per_s']:,.0f}", f"{r:.3f}",
         f"{o['p50_ms']} / {o['p99_ms']}", f"{k['p50_ms']} / {k['p99_ms']}",
         f"{o['api_cpu_ms_per_order']} / {k['api_cpu_ms_per_order']}", f"{c:.3f}"]
        for i, ((o, k), r, c) in enumerate(zip(pairs, ratios, cpu, strict=True))
    ]  # fmt: skip
    header = ["round", "off orders/s", "keys orders/s", "keys/off", "off p50/p99 ms", "keys p50/p99 ms",
              "API CPU ms/order off / keys", "keys/off CPU"]  # fmt: skip
    print()
    print_table(rows, header)
    for what, values in (("throughput", ratios), ("API CPU per order", cpu)):
        print(f"keys/off {what}: median {statistics.median(values):.3f} "
              f"(min {min(values):.3f}, max {max(values):.3f})")  # fmt: skip
    path = write_result(
        "auth", {"machine": machine(), **params, "results": results, "ratios": ratios, "cpu_ratios": cpu}
    )
    print(f"written: {path}")


async def micro(requests: int) -> None:
    """The edge alone, in this process: an ASGI call through `Edge` to an app that does nothing, AUTH=off
    against AUTH=keys with a cached key (the per-request cost authentication adds, without any network)."""
    from starlette.types import Message

    from services.accounts.directory import Directory
    from services.accounts.options import AccountsOptions
    from services.http.edge import Edge
    from services.http.parts import Policy

    settings = settings_for("micro.")
    await migrate_state(settings.database_url)
    conn = await asyncpg.connect(settings.database_url)
    try:
        key = await store.create_account(conn, f"bench-{uuid.uuid4().hex[:8]}")
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=1)
    directory = Directory(pool, settings.database_url, listen=False, ttl_s=5.0)

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        pass

    class State:
        accounts = directory
        order_limits = None

    class App:
        state = State()

    headers = [(b"host", b"api"), (b"authorization", f"Bearer {key.key}".encode())]
    scope = {"type": "http", "method": "GET", "path": "/api/orders", "headers": headers, "app": App()}

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        pass

    timings: dict[str, float] = {}
    for mode in ("off", "keys", "off", "keys"):
        edge = Edge(inner, Policy.of([]), AccountsOptions(auth=mode))  # type: ignore[arg-type]
        await edge(dict(scope), receive, send)  # warm: the key is looked up once, then cached
        start = time.perf_counter()
        for _ in range(requests):
            await edge(dict(scope), receive, send)
        timings[mode] = min(timings.get(mode, 1e9), (time.perf_counter() - start) / requests * 1e6)
    await pool.close()
    print(f"edge per request, in process, best of 2 x {requests:,}: AUTH=off {timings['off']:.1f} µs, "
          f"AUTH=keys (cached key) {timings['keys']:.1f} µs: authentication adds "
          f"{timings['keys'] - timings['off']:.1f} µs")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--orders", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--keyed", action="store_true", help="an Idempotency-Key on every order")
    parser.add_argument("--micro", action="store_true", help="the edge alone, in process")
    parser.add_argument("--requests", type=int, default=20_000, help="--micro: requests per mode")
    args = parser.parse_args()
    if args.micro:
        asyncio.run(micro(args.requests))
    else:
        asyncio.run(run(args.orders, args.rounds, args.concurrency, args.keyed))


if __name__ == "__main__":
    main()
