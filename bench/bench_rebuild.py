"""Benchmark: `oee rebuild` over a large event log, and the projector's lag while orders flow. Prints figures.

    uv run python bench/bench_rebuild.py rebuild [--orders 200000 50000]
    uv run python bench/bench_rebuild.py lag [--orders 5000]
    uv run python bench/bench_rebuild.py wait [--orders 300]

`rebuild`: writes N orders x 5 events (80 % confirmed, 20 % failed, interleaved as a router writes them: waves
of 1,000 orders in flight) straight into a fresh 12-partition topic with a raw aiokafka producer, then runs
`python -m services.cli rebuild --schema ...` as a subprocess and reports events/s and its peak RSS (psutil
sampling every 50 ms, and getrusage of the child). Several sizes show whether memory is flat.

`lag`: starts `oee venue`, `oee router` and `oee projector` as subprocesses on fresh topics, writes N orders
to the intake, and samples the projector's lag (log end - stored position, summed over partitions) every
200 ms until every order is projected terminal.

`wait`: read-your-writes latency: a GET with `minSeq=1` is sent before the order's first event is written
to the log; reported is the time from the broker's ack to the answer, with LISTEN/NOTIFY and with polling only.

Needs KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (or the local stack). Not a test: it never fails on speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import platform
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import psutil
from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from events.codec import encode, headers_for  # noqa: E402
from events.payloads import (  # noqa: E402
    OrderBuildingData,
    OrderConfirmedData,
    OrderFailedData,
    OrderRequestedData,
    OrderRoutingData,
    OrderSubmittedData,
    Quote,
)
from events.topics import Topics, topic_specs  # noqa: E402
from events.types import (  # noqa: E402
    SCHEMA_VERSION,
    OrderBuilding,
    OrderConfirmed,
    OrderFailed,
    OrderRequested,
    OrderRouting,
    OrderSubmitted,
)
from services import config  # noqa: E402
from services.stack.topics import ensure_topics  # noqa: E402

WAVE = 1000


def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} cores ({model}), {ram:.0f} GiB RAM, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def lifecycle(rng: random.Random, t0: datetime) -> list[bytes]:
    """One order's five events, encoded: built directly (the contract's types check them on construction)."""
    oid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(5)]
    side = "sell" if rng.random() < 0.5 else "buy"
    amount = round(rng.uniform(0.1, 50), 4)
    at = [t0 + timedelta(milliseconds=ms) for ms in (0, 3, 9, 12, 2500)]
    price = 150 + rng.uniform(-2, 2)
    quotes = [
        Quote(venue=v, price=round(price * f, 4), fee_bps=fee, amount_in=amount,
              amount_out=round(amount * price * f, 4), price_impact_bps=round(rng.uniform(0, 20), 2),
              quoted_at=at[1])
        for v, f, fee in (("raydium", 0.998, 25.0), ("meteora", 0.999, 22.4))
    ]  # fmt: skip
    venue = "meteora"
    common = {"order_id": oid}

    def env(i: int, kind: str) -> dict:
        return dict(common, event_id=ids[i], seq=i + 1, occurred_at=at[i],
                    schema_version=SCHEMA_VERSION[kind], causation_id=ids[i - 1] if i else None)  # fmt: skip

    events = [
        OrderRequested(**env(0, "OrderRequested"), data=OrderRequestedData(order_type="market", base_token="SOL", quote_token="USDC",
                                                         side=side, amount_in=amount, slippage_bps=100)),
        OrderRouting(**env(1, "OrderRouting"), data=OrderRoutingData(attempt=1)),
        OrderBuilding(**env(2, "OrderBuilding"), data=OrderBuildingData(quotes=quotes, selected_venue=venue,
                                                       reason="meteora pays more net of fees", attempts=1)),
        OrderSubmitted(**env(3, "OrderSubmitted"), data=OrderSubmittedData(venue=venue, client_order_id=oid, expected_price=price,
                                                         min_acceptable_price=price * 0.99, slippage_bps=100)),
    ]  # fmt: skip
    if rng.random() < 0.8:
        events.append(OrderConfirmed(**env(4, "OrderConfirmed"), data=OrderConfirmedData(
            venue=venue, tx_hash=f"5Kx{ids[4].replace('-', '')}", executed_price=price, amount_in=amount,
            amount_out=amount * price, client_order_id=oid)))  # fmt: skip
    else:
        events.append(OrderFailed(**env(4, "OrderFailed"), data=OrderFailedData(
            reason="slippage exceeded", stage="execution", attempts=1, venue=venue, client_order_id=oid)))  # fmt: skip
    return [encode(e) for e in events]


async def write_log(bootstrap: str, topic: str, orders: int, seed: int = 1) -> float:
    """Write `orders` lifecycles, interleaved in waves; returns seconds taken."""
    rng = random.Random(seed)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=20, max_batch_size=512 * 1024, compression_type=None
    )
    await producer.start()
    started = time.monotonic()
    t0 = datetime(2025, 3, 14, tzinfo=UTC)
    headers = {name: [("type", name.encode()), ("schema_version", str(SCHEMA_VERSION[name]).encode())] for name in (
        "OrderRequested", "OrderRouting", "OrderBuilding", "OrderSubmitted", "OrderConfirmed", "OrderFailed")}  # fmt: skip
    try:
        pending = []
        for wave_start in range(0, orders, WAVE):
            wave = [
                lifecycle(rng, t0 + timedelta(seconds=wave_start / 100))
                for _ in range(min(WAVE, orders - wave_start))
            ]
            for step in range(5):
                for events in wave:
                    value = events[step]
                    key = value[value.index(b'"order_id":"') + 12 :][:36]
                    kind = value[9 : value.index(b'"', 9)].decode()
                    pending.append(await producer.send(topic, value, key=key, headers=headers[kind]))
            if len(pending) > 50_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - started


async def fresh_topics(settings: config.Settings, tag: str, partitions: int = 12) -> Topics:
    topics = Topics.with_prefix(f"bench{tag}{uuid.uuid4().hex[:6]}.")
    await ensure_topics(settings.bootstrap_servers, topic_specs(topics, partitions=partitions))
    return topics


@dataclasses.dataclass
class Sampled:
    code: int
    wall: float
    peak_rss_mib: float
    cpu_s: float  # the child's user + system CPU
    pg_cpu_s: float  # CPU of the Postgres backends serving it (application_name oee-rebuild)
    output: str


async def run_sampled(argv: list[str], env: dict[str, str], database_url: str) -> Sampled:
    """Run a child; sample its RSS, and the CPU of the Postgres backends serving it, every 50 ms."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output = asyncio.create_task(proc.stdout.read() if proc.stdout else asyncio.sleep(0, b""))
    child = psutil.Process(proc.pid)
    peak, cpu, backends, cpus = 0, 0.0, {}, {}
    conn = await asyncpg.connect(database_url)
    try:
        tick = 0
        while proc.returncode is None:
            with contextlib.suppress(psutil.Error):
                # The rebuild and its worker processes: RSS adds up, CPU per process is cumulative.
                tree = [child, *child.children(recursive=True)]
                rss = 0
                for member in tree:
                    with contextlib.suppress(psutil.Error):
                        rss += member.memory_info().rss
                        t = member.cpu_times()
                        cpus[member.pid] = t.user + t.system
                peak = max(peak, rss)
                cpu = sum(cpus.values())
            if tick % 4 == 0:
                for r in await conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'oee-rebuild'"
                ):
                    backends.setdefault(r["pid"], 0.0)
            for pid in list(backends):
                with contextlib.suppress(psutil.Error):
                    t = psutil.Process(pid).cpu_times()
                    backends[pid] = t.user + t.system
            tick += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.05)
    finally:
        await conn.close()
    out = (await output).decode()
    return Sampled(
        proc.returncode or 0, time.monotonic() - started, peak / 2**20, cpu, sum(backends.values()), out
    )


async def bench_rebuild(sizes: list[int], workers_list: list[int]) -> None:
    settings = config.load()
    print(f"machine: {machine()}")
    conn = await asyncpg.connect(settings.database_url)
    try:
        for orders in sizes:
            topics = await fresh_topics(settings, f"r{orders}")
            seconds = await write_log(settings.bootstrap_servers, topics.events, orders)
            events = orders * 5
            print(
                f"\n{events:,} events ({orders:,} orders) written in {seconds:.1f} s ({events / seconds:,.0f}/s)"
            )
            for workers in workers_list:
                schema = f"bench_{uuid.uuid4().hex[:8]}"
                env = dict(os.environ, OEE_TOPIC_PREFIX=topics.events.removesuffix("orders.events"),
                           KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers, DATABASE_URL=settings.database_url)  # fmt: skip
                argv = [
                    sys.executable,
                    "-m",
                    "services.cli",
                    "rebuild",
                    "--schema",
                    schema,
                    "--workers",
                    str(workers),
                ]
                run = await run_sampled(argv, env, settings.database_url)
                print(run.output.strip())
                print(f"command: OEE_TOPIC_PREFIX={env['OEE_TOPIC_PREFIX']} {' '.join(argv[1:])}")
                print(
                    f"exit {run.code}; wall {run.wall:.1f} s incl. interpreter start ({events / run.wall:,.0f} events/s);"
                    f" peak RSS {run.peak_rss_mib:.0f} MiB (all its processes)"
                )
                print(
                    f"CPU: rebuild processes {run.cpu_s:.1f} s ({run.cpu_s / events * 1e6:.1f} us/event), Postgres"
                    f" backends {run.pg_cpu_s:.1f} s ({run.pg_cpu_s / events * 1e6:.1f} us/event); on 2 idle cores"
                    f" that is at most ~{events / max((run.cpu_s + run.pg_cpu_s) / 2, run.pg_cpu_s / workers, run.cpu_s / workers):,.0f} events/s"
                )
                rows = await conn.fetchval(f'SELECT count(*) FROM "{schema}".order_events')
                print(f"rows in {schema}.order_events: {rows:,}")
                await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await _delete_topics(settings.bootstrap_servers, topics)
    finally:
        await conn.close()


async def _delete_topics(bootstrap: str, topics: Topics) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([s.name for s in topic_specs(topics)])
    finally:
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("rebuild")
    p.add_argument("--orders", type=int, nargs="+", default=[50_000, 200_000])
    p.add_argument("--workers", type=int, nargs="+", default=[2], help="rebuild --workers values to compare")
    p = sub.add_parser("lag")
    p.add_argument("--orders", type=int, default=5000)
    p = sub.add_parser("wait")
    p.add_argument("--orders", type=int, default=300)
    args = parser.parse_args()
    if args.what == "rebuild":
        asyncio.run(bench_rebuild(args.orders, args.workers))
    elif args.what == "lag":
        asyncio.run(bench_lag(args.orders))
    else:
        asyncio.run(bench_wait(args.orders))


def _pcts(values: list[float]) -> str:
    if not values:
        return "no samples"
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    return f"p50 {q[49]:,.1f}  p95 {q[94]:,.1f}  p99 {q[98]:,.1f}  max {max(values):,.1f}"


async def _pipeline_setup(name: str) -> tuple[config.Settings, Topics, str, asyncpg.Connection, Path]:
    """Fresh topics (settings pointed at them), a migrated fresh schema, a scratch directory for logs."""
    from projections import migrations

    settings = config.load()
    print(f"machine: {machine()}")
    topics = await fresh_topics(settings, name)
    settings = dataclasses.replace(settings, topic_prefix=topics.events.removesuffix("orders.events"))
    schema = f"bench{name}_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(settings.database_url)
    await migrations.apply(conn, schema)
    return settings, topics, schema, conn, Path(f"/tmp/oee-bench-{name}-{uuid.uuid4().hex[:6]}")


async def bench_lag(orders: int) -> None:
    """The projector's lag while N orders go through venue + router + projector (subprocesses)."""
    from projections.logscan import LogScan
    from tests.e2e.harness import free_port, order_request, service, wait_http, wait_log
    from tests.projection_fixtures import produce

    settings, topics, schema, conn, tmp = await _pipeline_setup("lag")
    port = free_port()
    env = {"VENUE_PORT": str(port), "VENUE_SEED": "7", "VENUE_EXEC_LATENCY_MS": "50-300"}
    procs = [service("venue", settings, tmp, env).start()]
    procs.append(service("router", settings, tmp, dict(env, VENUE_URL=f"http://127.0.0.1:{port}")).start())
    procs.append(service("projector", settings, tmp, {"PROJECTION_SCHEMA": schema}).start())
    lags: list[float] = []
    try:
        await wait_http(f"http://127.0.0.1:{port}/health", procs[0])
        await wait_log(procs[1], "partition assigned", count=12, timeout=120)
        await wait_log(procs[2], "partition assigned", timeout=120)
        started = time.monotonic()
        sender = asyncio.create_task(  # noqa: RUF006 (awaited below)
            produce(settings.bootstrap_servers, topics.requests, [order_request() for _ in range(orders)])
        )
        async with LogScan(settings.bootstrap_servers, topics.events) as scan:
            while True:
                ends = await scan.end_offsets()
                rows = await conn.fetch(f'SELECT partition, next_offset FROM "{schema}".projector_positions')
                at = {r["partition"]: r["next_offset"] for r in rows}
                lags.append(float(sum(max(0, n - at.get(p, 0)) for p, n in ends.items())))
                done = await conn.fetchval(
                    f"SELECT count(*) FROM \"{schema}\".orders WHERE status IN ('confirmed', 'failed')"
                )
                if done >= orders and lags[-1] == 0:
                    break
                if time.monotonic() - started > 600:
                    raise SystemExit(f"not done after 600 s: {done} of {orders} terminal")
                await asyncio.sleep(0.2)
        await sender
        seconds = time.monotonic() - started
        events = await conn.fetchval(f'SELECT count(*) FROM "{schema}".order_events')
        print(f"{orders:,} orders ({events:,} events) through venue + router + projector in {seconds:.1f} s "
              f"({orders / seconds:,.0f} orders/s, {events / seconds:,.0f} events/s projected)")  # fmt: skip
        print(f"projector lag, events (sampled every 200 ms, {len(lags)} samples): {_pcts(lags)}")
    finally:
        for proc in reversed(procs):
            proc.stop()
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()
        await _delete_topics(settings.bootstrap_servers, topics)


async def bench_wait(orders: int) -> None:
    """Read-your-writes: ack of an order's first event -> answer of a GET ?minSeq=1 already waiting."""
    import httpx

    from services import query
    from tests.api_harness import api_app
    from tests.e2e.harness import order_request, service, wait_log

    settings, topics, schema, conn, tmp = await _pipeline_setup("wait")
    projector = service("projector", settings, tmp, {"PROJECTION_SCHEMA": schema}).start()
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=0)
    await producer.start()
    try:
        await wait_log(projector, "partition assigned", timeout=120)
        for listen in (True, False):
            reads = query.part(settings, schema=schema, listen=listen)
            app = api_app(settings, ingress_part=False, more=[reads], schema=schema)
            latencies: list[float] = []
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://api", timeout=30
                ) as client:
                    await asyncio.sleep(0.5)  # let the listener connect (bench setup, not synchronisation)
                    for _ in range(orders):
                        event = order_request()
                        url = f"/api/orders/{event.order_id}?minSeq=1&waitMs=10000"
                        get = asyncio.create_task(client.get(url))
                        await asyncio.sleep(0.005)
                        await producer.send_and_wait(
                            topics.events,
                            encode(event),
                            key=event.order_id.encode(),
                            headers=headers_for(event),
                        )
                        acked = time.perf_counter()
                        answer = await get
                        assert answer.status_code == 200, answer.text
                        latencies.append((time.perf_counter() - acked) * 1000)
            mode = "LISTEN/NOTIFY (polling every 500 ms beneath)" if listen else "polling every 50 ms only"
            print(f"{mode}: broker ack -> answer, ms, {orders} orders: {_pcts(latencies)}")
    finally:
        await producer.stop()
        projector.stop()
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()
        await _delete_topics(settings.bootstrap_servers, topics)


if __name__ == "__main__":
    main()
