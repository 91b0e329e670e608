"""Order pipeline benchmark: the real `oee venue`, `oee router` and `oee api` as subprocesses on topics of
their own, driven over HTTP, measured from the client and from the order event log (read_committed).

    uv run python -m bench.bench_pipeline all      # http + steady + memory, one JSON in bench/results/
    uv run python -m bench.bench_pipeline http     # ingress vs bare Starlette (wrk), end to end
    uv run python -m bench.bench_pipeline steady   # POST -> terminal at a steady open-loop rate
    uv run python -m bench.bench_pipeline memory   # router RSS with N orders in flight
    uv run python -m bench.bench_pipeline router   # the router alone: N orders produced to the intake
    uv run python -m bench.bench_pipeline report bench/results/pipeline-*.json

Broker and database come from KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL (else the local stack's defaults).
ROUTER_* knobs are inherited from the environment (defaults unless set). Prints figures and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench import profiling
from bench.common import (
    REPO,
    RESULTS,
    CpuMeter,
    LogWatch,
    System,
    end_offsets,
    latency_summary,
    loadavg,
    machine,
    print_table,
    sample_rss,
    start_system,
    write_result,
)
from services.router.options import RouterOptions
from tests.e2e.harness import order_request, produce

WRK_SCRIPT = REPO / "bench" / "wrk_orders.lua"
BURST_FETCH_BYTES = 64 * 1024
"""Bursts read the log in fetches of >= 64 KiB (or 20 ms): a fetch per record costs this process (and the
broker) more than the router's work. A terminal event may so be seen up to 20 ms late; the steady phase
reads with no minimum."""
SEED = {
    "source": "seed README: BullMQ, 10 concurrent workers, rate limit 100 jobs / 60 s, execution 2-3 s",
    "orders_per_s": round(100 / 60, 2),
    "in_flight": 10,
    "post_to_terminal_s": "2-3 (simulated execution delay alone)",
}


@dataclass(frozen=True)
class Options:
    orders: int
    concurrency: int
    rounds: int
    warmup: int
    rate: float
    duration_s: float
    mem_orders: int
    mem_exec_ms: int
    partitions: int
    loadgen_cpus: str | None
    server_cpus: str | None
    exec_latency_ms: str
    profile: tuple[str, ...] = ()
    router: bool = True
    generator: str = "auto"  # wrk when installed, else bench.loadgen; or force either


# -- load generation ---------------------------------------------------------------------------------------
def children_cpu_s() -> float:
    """CPU seconds of this process's terminated children (the load generator, once waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def taskset(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus is not None else []


async def run_wrk(url: str, orders: int, concurrency: int, tag: str, cpus: str | None) -> dict[str, Any]:
    """`orders` POSTs with wrk (one thread, `concurrency` connections), each with a timed Idempotency-Key."""
    argv = [
        *taskset(cpus), "wrk", "-t1", f"-c{concurrency}", "-d600s", "--timeout", "10s",
        "-s", str(WRK_SCRIPT), f"{url}/api/orders/execute", "--", str(orders), tag, "1",
    ]  # fmt: skip
    cpu0 = children_cpu_s()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    line = next((x for x in text.splitlines() if x.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{text}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    seconds = (raw["last_us"] - raw["first_us"]) / 1e6
    lat = raw["latency_us"]
    return {
        "generator": f"wrk -t1 -c{concurrency}" + (f" (taskset -c {cpus})" if cpus else ""),
        "answered": raw["answered"],
        "created_201": raw["created"],
        "other_status": raw["other"],
        "errors": raw["errors"],
        "seconds": round(seconds, 3),
        "orders_per_s": round(raw["answered"] / seconds, 1),
        "latency": {k: round(lat[k] / 1000, 2) for k in ("p50", "p90", "p99", "p999", "max")},
        "loadgen_cpu_s": round(children_cpu_s() - cpu0, 2),
    }


async def run_loadgen(url: str, out: Path, cpus: str | None, *flags: str) -> list[list[Any]]:
    """The aiohttp generator (`bench.loadgen`) in its own process; returns its rows."""
    argv = [*taskset(cpus), sys.executable, "-m", "bench.loadgen", f"{url}/api/orders/execute"]
    proc = await asyncio.create_subprocess_exec(*argv, "--out", str(out), *flags, cwd=REPO)
    if await proc.wait() != 0:
        raise RuntimeError(f"bench.loadgen failed with {proc.returncode}")
    return read_rows(out)


def read_rows(path: Path) -> list[list[Any]]:
    rows: list[list[Any]] = json.loads(path.read_text())["rows"]
    return rows


async def run_closed_loop(url: str, orders: int, concurrency: int, cpus: str | None, tmp: Path) -> dict:
    """wrk's fallback: the aiohttp generator in closed loop (the same figures, from its rows)."""
    cpu0 = children_cpu_s()
    rows = await run_loadgen(
        url, tmp / "closed.json", cpus, "--orders", str(orders), "--concurrency", str(concurrency)
    )
    seconds = max(r[2] for r in rows) - min(r[1] for r in rows)
    summary = latency_summary([r[2] - r[1] for r in rows])
    return {
        "generator": f"bench.loadgen closed loop, {concurrency} in flight",
        "answered": len(rows),
        "created_201": sum(1 for r in rows if r[3] == 201),
        "other_status": sum(1 for r in rows if r[3] != 201),
        "seconds": round(seconds, 3),
        "orders_per_s": round(len(rows) / seconds, 1),
        "latency": {k.removesuffix("_ms"): v for k, v in summary.items() if k != "n"},
        "loadgen_cpu_s": round(children_cpu_s() - cpu0, 2),
        "sends": {r[4]: r[1] for r in rows if r[3] == 201},
    }


async def burst(
    url: str, opts: Options, tag: str, pids: Mapping[str, int], tmp: Path, orders: int | None = None
) -> dict[str, Any]:
    """N orders at the chosen concurrency, with the CPU each process used meanwhile."""
    n = orders or opts.orders
    meter = CpuMeter(pids).start()
    use_wrk = opts.generator == "wrk" or (opts.generator == "auto" and shutil.which("wrk") is not None)
    if use_wrk:
        result = await run_wrk(url, n, opts.concurrency, tag, opts.loadgen_cpus)
    else:
        result = await run_closed_loop(url, n, opts.concurrency, opts.loadgen_cpus, tmp)
    result["cpu"] = meter.stop()
    return result


# -- end to end ----------------------------------------------------------------------------------------------
def sends_by_key(watch: LogWatch, tag: str) -> dict[str, float]:
    """Order id -> client send time, read back from the Idempotency-Key wrk put on each request."""
    return watch.keyed.get(tag, {})


async def drain(watch: LogWatch, orders: Callable[[], Mapping[str, float]], timeout: float) -> None:
    """Wait until every order of the round has its terminal event and no new order arrived for 1 s (wrk
    leaves up to `concurrency` requests in flight when it stops; the ingress still publishes those)."""
    deadline = time.monotonic() + timeout
    count, since = -1, time.monotonic()
    while True:
        ids = orders()
        if len(ids) != count:
            count, since = len(ids), time.monotonic()
        if ids and all(i in watch.terminal for i in ids) and time.monotonic() - since >= 1.0:
            return
        if time.monotonic() > deadline:
            done = sum(1 for i in ids if i in watch.terminal)
            raise TimeoutError(f"{done}/{len(ids)} orders terminal after {timeout:.0f} s")
        await asyncio.sleep(0.1)


def end_to_end(watch: LogWatch, sends: Mapping[str, float]) -> dict[str, Any]:
    """POST -> terminal figures for orders sent at `sends` (epoch seconds)."""
    terminals = [watch.terminal[i] for i in sends]
    first_send, last_seen = min(sends.values()), max(t.seen for t in terminals)
    first_terminal = min(t.seen for t in terminals)
    outcomes: dict[str, int] = {}
    for t in terminals:
        outcomes[t.type] = outcomes.get(t.type, 0) + 1
    return {
        "orders": len(sends),
        "outcomes": outcomes,
        "seconds_first_post_to_last_terminal": round(last_seen - first_send, 3),
        "orders_per_s": round(len(sends) / (last_seen - first_send), 1),
        "terminal_events_per_s": round(len(sends) / max(last_seen - first_terminal, 1e-9), 1),
        "post_to_terminal_seen": latency_summary([watch.terminal[i].seen - s for i, s in sends.items()]),
        "post_to_terminal_occurred_at": latency_summary(
            [watch.terminal[i].occurred_at - s for i, s in sends.items()]
        ),
        # the two transactions of an order: intake (routing..submitted), then its settlement
        "post_to_submitted_seen": latency_summary([watch.submitted[i] - s for i, s in sends.items()]),
        "submitted_to_terminal_seen": latency_summary(
            [watch.terminal[i].seen - watch.submitted[i] for i in sends]
        ),
    }


async def start_profilers(system: System, names: Sequence[str], tag: str) -> list[profiling.Profiler]:
    """py-spy on the named services (until `Profiler.stop`)."""
    if names and not profiling.available():
        raise SystemExit("--profile needs py-spy: uv run --with py-spy python -m bench.bench_pipeline ...")
    return [
        await profiling.start(name, system.procs[name].pid, system.tmp / "profiles" / f"{name}-{tag}.folded")
        for name in names
    ]


# -- phases -----------------------------------------------------------------------------------------------------
async def warm_up(system: System, watch: LogWatch, opts: Options) -> None:
    """Open every connection and producer path once, and wait until the warm-up orders are done."""
    if not opts.warmup:
        return
    if "bare" in system.urls:
        await burst(system.urls["bare"], opts, "warmbare", {}, system.tmp, opts.warmup)
    sent = (await burst(system.urls["api"], opts, "warmapi", {}, system.tmp, opts.warmup)).get("sends")
    if opts.router:
        await drain(watch, lambda: sent if sent is not None else sends_by_key(watch, "warmapi"), 300)


async def http_phase(system: System, watch: LogWatch, opts: Options) -> list[dict[str, Any]]:
    """Rounds of: bare burst, ingress burst, then (with a router) wait for the ingress burst's terminal
    events. py-spy, when asked, records round 1 from the ingress burst until its orders are done."""
    rounds = []
    for r in range(1, opts.rounds + 1):
        bare = await burst(system.urls["bare"], opts, f"b{r}", system.pids(), system.tmp)
        bare.pop("sends", None)
        profilers = await start_profilers(system, opts.profile if r == 1 else (), f"i{r}")
        ingress = await burst(system.urls["api"], opts, f"i{r}", system.pids(), system.tmp)
        sent = ingress.pop("sends", None)
        record: dict[str, Any] = {"round": r, "bare": bare, "ingress": ingress}
        record["ratio"] = round(ingress["orders_per_s"] / bare["orders_per_s"], 3)
        if opts.router:
            tag = f"i{r}"
            record["e2e"] = await round_e2e(system, watch, lambda: sent or sends_by_key(watch, tag))  # noqa: B023
        if profilers:
            record["profiles"] = {p.name: str(await p.stop()) for p in profilers}
        rounds.append(record)
        e2e = f"e2e {record['e2e']['orders_per_s']}/s" if "e2e" in record else "no router"
        print(
            f"round {r}: bare {bare['orders_per_s']}/s, ingress {ingress['orders_per_s']}/s "
            f"(p99 {ingress['latency']['p99']} ms), ratio {record['ratio']}, {e2e}, load {loadavg()}",
            flush=True,
        )
    return rounds


async def round_e2e(
    system: System, watch: LogWatch, orders: Callable[[], Mapping[str, float]]
) -> dict[str, Any]:
    """Wait for the burst's orders to finish; their end-to-end figures and the CPU spent meanwhile."""
    meter = CpuMeter(system.pids()).start()
    await drain(watch, orders, 900)
    e2e = end_to_end(watch, orders())
    e2e["cpu_until_drained"] = meter.stop()
    return e2e


async def idle_phase(system: System, seconds: float = 5.0) -> dict[str, Any]:
    """CPU the running system uses with no orders at all (polling, heartbeats, timers)."""
    meter = CpuMeter(system.pids()).start()
    await asyncio.sleep(seconds)
    return meter.stop()


async def steady_phase(system: System, watch: LogWatch, opts: Options) -> dict[str, Any]:
    """Open loop at `rate` orders/s for `duration_s`: POST and POST -> terminal, timed from the plan."""
    meter = CpuMeter(system.pids()).start()
    print(f"steady phase starts: {opts.rate}/s for {opts.duration_s} s", flush=True)  # for on-the-wire counts
    flags = ("--rate", str(opts.rate), "--duration", str(opts.duration_s))
    rows = await run_loadgen(system.urls["api"], system.tmp / "steady.json", opts.loadgen_cpus, *flags)
    ok = {r[4]: r[0] for r in rows if r[3] == 201}
    await drain(watch, lambda: ok, 120)
    cpu = meter.stop()
    result = {
        "rate": opts.rate,
        "duration_s": opts.duration_s,
        "generator": "bench.loadgen open loop"
        + (f" (taskset -c {cpus})" if (cpus := opts.loadgen_cpus) else ""),
        "sent": len(rows),
        "created_201": len(ok),
        "max_send_lag_ms": round(max(r[1] - r[0] for r in rows) * 1000, 2),
        "post": latency_summary([r[2] - r[0] for r in rows]),
        "e2e": end_to_end(watch, ok),
        "cpu": cpu,
    }
    e2e = result["e2e"]["post_to_terminal_seen"]
    print(f"steady {opts.rate}/s: POST->terminal p50 {e2e['p50_ms']} ms, p99 {e2e['p99_ms']} ms", flush=True)
    return result


async def venue_pending(url: str) -> int:
    async with aiohttp.ClientSession() as session:
        total = 0
        for venue in ("raydium", "meteora"):
            async with session.get(f"{url}/venues/{venue}/ledger") as response:
                total += int((await response.json())["pending"])
        return total


def sample_orders(n: int) -> list[Any]:
    """`n` OrderRequested events, buys and sells of a few sizes (as the e2e tests make them)."""
    return [order_request("sell" if i % 2 else "buy", amount=1 + i % 7) for i in range(n)]


async def router_phase(opts: Options, tmp: Path) -> dict[str, Any]:
    """The router alone (no HTTP): `orders` OrderRequested produced straight to the intake, venue execution
    delay as for http, until every order has its terminal event."""
    system = await start_system(
        f"benchrouter{int(time.time())}-", tmp / "router", exec_latency_ms=opts.exec_latency_ms,
        partitions=opts.partitions, api=False,
    )  # fmt: skip
    try:
        async with LogWatch(
            system.settings.bootstrap_servers, system.topics.events, min_bytes=BURST_FETCH_BYTES
        ) as watch:
            warm = sample_orders(opts.warmup)
            await produce(system.settings.bootstrap_servers, system.topics.requests, warm)
            await watch.until_terminal([o.order_id for o in warm], 300)
            orders = sample_orders(opts.orders)
            profilers = await start_profilers(system, opts.profile, "router-alone")
            meter = CpuMeter(system.pids()).start()
            started = time.time()
            await produce(system.settings.bootstrap_servers, system.topics.requests, orders)
            produced = time.time()
            await watch.until_terminal([o.order_id for o in orders], 900)
            cpu = meter.stop()
            profiles = {p.name: str(await p.stop()) for p in profilers}
            e2e = end_to_end(watch, {o.order_id: started for o in orders})
            log = await log_stats(system, watch)
    finally:
        system.stop()
    seconds = max(watch.terminal[o.order_id].seen for o in orders) - started
    n = opts.orders
    return {
        "orders": n,
        "partitions": opts.partitions,
        "produce_s": round(produced - started, 2),
        "seconds_to_last_terminal": round(seconds, 2),
        "orders_per_s": round(n / seconds, 1),
        "outcomes": e2e["outcomes"],
        "router_cpu_ms_per_order": round(1000 * cpu["cpu_s"]["router"] / n, 3),
        "venue_cpu_ms_per_order": round(1000 * cpu["cpu_s"]["venue"] / n, 3),
        "broker_cpu_ms_per_order": round(1000 * cpu["cpu_s"].get("kafka", 0.0) / n, 3),
        "transactions_per_order": log["transactions_per_order"],
        "cpu": cpu,
        "profiles": profiles,
    }


async def memory_phase(opts: Options, tmp: Path) -> dict[str, Any]:
    """Router RSS with `mem_orders` in flight: produce them straight to the intake with a slow venue and wait
    until every one has its OrderSubmitted in the log."""
    prefix = f"benchmem{int(time.time())}-"
    system = await start_system(
        prefix, tmp / "memory", exec_latency_ms=str(opts.mem_exec_ms), partitions=opts.partitions, api=False
    )
    samples: list[tuple[float, int]] = []
    try:
        router = system.procs["router"]
        async with LogWatch(
            system.settings.bootstrap_servers, system.topics.events, min_bytes=BURST_FETCH_BYTES
        ) as watch:
            sampler = asyncio.create_task(sample_rss(router.pid, 0.1, samples))
            await asyncio.sleep(1.0)
            idle = samples[-1][1]
            meter = CpuMeter(system.pids()).start()
            orders = sample_orders(opts.mem_orders)
            started = time.time()
            await produce(system.settings.bootstrap_servers, system.topics.requests, orders)
            produced = time.time()
            await watch.until(lambda w: len(w.submitted) >= opts.mem_orders, 600, "every OrderSubmitted")
            all_submitted = time.time()
            at_submitted = samples[-1][1]
            pending = await venue_pending(system.urls["venue"])
            terminal_then = len(watch.terminal)
            await asyncio.sleep(3.0)  # keep sampling: the last transactions and the reconcile loop
            sampler.cancel()
            cpu = meter.stop()
    finally:
        system.stop()
    peak = max(rss for _, rss in samples)
    return {
        "orders": opts.mem_orders,
        "venue_exec_latency_ms": opts.mem_exec_ms,
        "produce_s": round(produced - started, 2),
        "all_submitted_after_s": round(all_submitted - started, 2),
        "submitted_per_s": round(opts.mem_orders / (all_submitted - started), 1),
        "submitted_in_log": opts.mem_orders,
        "terminal_in_log_then": terminal_then,
        "in_flight": opts.mem_orders - terminal_then,
        "venue_pending_swaps": pending,
        "rss_idle_mb": round(idle / 2**20, 1),
        "rss_all_submitted_mb": round(at_submitted / 2**20, 1),
        "rss_peak_mb": round(peak / 2**20, 1),
        "rss_samples": len(samples),
        "cpu": cpu,
    }


async def log_stats(system: System, watch: LogWatch) -> dict[str, Any]:
    """What the run left in the event log, and how many transactions wrote it (markers = offsets - records)."""
    topic = system.topics.events
    end = (await end_offsets(system.settings.bootstrap_servers, [topic], system.partitions))[topic]
    records = sum(watch.counts.values())
    orders = watch.counts["OrderRequested"]
    return {
        "prefix": system.settings.topic_prefix,
        "counts": dict(watch.counts),
        "duplicate_terminals": watch.duplicate_terminals,
        "transaction_markers": end - records,
        "transactions_per_order": round((end - records) / orders, 3) if orders else None,
    }


# -- the run -------------------------------------------------------------------------------------------------
async def run(what: str, opts: Options, tmp: Path) -> dict[str, Any]:
    result: dict[str, Any] = {
        "benchmark": "order pipeline",
        "command": " ".join(sys.argv),
        "machine": machine(),
        "options": asdict(opts),
        "router_knobs": asdict(RouterOptions.from_env(os.environ)),
        "seed": SEED,
    }
    if what in ("all", "http", "steady"):
        prefix = f"bench{int(time.time())}-"
        system = await start_system(
            prefix, tmp / "http", exec_latency_ms=opts.exec_latency_ms, partitions=opts.partitions,
            api=True, bare=what != "steady", router=opts.router, server_cpus=opts.server_cpus,
        )  # fmt: skip
        try:
            bootstrap, topic = system.settings.bootstrap_servers, system.topics.events
            async with LogWatch(bootstrap, topic, min_bytes=BURST_FETCH_BYTES) as watch:
                await warm_up(system, watch, opts)
                result["idle"] = await idle_phase(system)
                if what != "steady":
                    result["http"] = await http_phase(system, watch, opts)
                result["log"] = await log_stats(system, watch)
            if what != "http":
                async with LogWatch(bootstrap, topic, from_end=True) as watch:  # fetches of any size
                    result["steady"] = await steady_phase(system, watch, opts)
        finally:
            system.stop()
    if what == "router":
        result["router"] = await router_phase(opts, tmp)
        print(f"router alone: {result['router']['orders_per_s']} orders/s", flush=True)
    if what in ("all", "memory"):
        result["memory"] = await memory_phase(opts, tmp)
        print(f"memory: {result['memory']['rss_peak_mb']} MB peak", flush=True)
    result["machine"]["loadavg_end"] = loadavg()
    return result


# -- the table -------------------------------------------------------------------------------------------------
def _med(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:,}"
    return f"{statistics.median(values):,} (min {min(values):,}, max {max(values):,})"


Row = list[str]


def row(figure: str, values: Sequence[float], aim: str = "", ok: bool | None = None) -> Row:
    return [figure, _med(values), aim, "-" if ok is None else ("yes" if ok else "NO")]


def http_rows(rounds: Sequence[Mapping[str, Any]]) -> list[Row]:
    ing = [r["ingress"] for r in rounds]
    rate = [x["orders_per_s"] for x in ing]
    p99 = [x["latency"]["p99"] for x in ing]
    ratio = [r["ratio"] for r in rounds]
    rows = [
        row("ingress orders/s", rate, ">= 3,000", statistics.median(rate) >= 3000),
        row("ingress POST p50 ms", [x["latency"]["p50"] for x in ing]),
        row("ingress POST p99 ms", p99, "< 50", statistics.median(p99) < 50),
        row("bare Starlette orders/s", [r["bare"]["orders_per_s"] for r in rounds], "(ceiling)"),
        row("bare POST p50 ms", [r["bare"]["latency"]["p50"] for r in rounds]),
        row("bare POST p99 ms", [r["bare"]["latency"]["p99"] for r in rounds]),
        row("ingress / bare", ratio, ">= 0.6", statistics.median(ratio) >= 0.6),
    ]
    e2e = [r["e2e"] for r in rounds if "e2e" in r]
    if e2e:
        e2e_rate = [x["orders_per_s"] for x in e2e]
        rows += [
            row("end to end orders/s", e2e_rate, ">= 1,000", statistics.median(e2e_rate) >= 1000),
            row("e2e POST->terminal p50 ms", [x["post_to_terminal_seen"]["p50_ms"] for x in e2e]),
            row("e2e POST->terminal p99 ms", [x["post_to_terminal_seen"]["p99_ms"] for x in e2e]),
        ]
    return rows


def steady_rows(steady: Mapping[str, Any]) -> list[Row]:
    lat, rate = steady["e2e"]["post_to_terminal_seen"], steady["rate"]
    return [
        row(f"{rate:g}/s POST->terminal p50 ms", [lat["p50_ms"]], "<= 15", lat["p50_ms"] <= 15),
        row(f"{rate:g}/s POST->terminal p99 ms", [lat["p99_ms"]], "<= 50", lat["p99_ms"] <= 50),
        row(f"{rate:g}/s POST p99 ms", [steady["post"]["p99_ms"]]),
        row(f"{rate:g}/s orders/s sustained", [steady["e2e"]["orders_per_s"]]),
    ]


def memory_rows(mem: Mapping[str, Any]) -> list[Row]:
    return [
        row("router orders in flight", [mem["in_flight"]], ">= 10,000", mem["in_flight"] >= 10_000),
        row("router RSS peak MB", [mem["rss_peak_mb"]], "< 300", mem["rss_peak_mb"] < 300),
    ]


def table_rows(result: Mapping[str, Any]) -> list[Row]:
    rows: list[Row] = []
    if result.get("http"):
        rows += http_rows(result["http"])
    if result.get("steady"):
        rows += steady_rows(result["steady"])
    if result.get("memory"):
        rows += memory_rows(result["memory"])
    if result.get("router"):
        r = result["router"]
        rows.append(row(f"router alone, {r['partitions']} partitions: orders/s", [r["orders_per_s"]]))
        rows.append(row("router alone: router CPU ms/order", [r["router_cpu_ms_per_order"]]))
        rows.append(row("router alone: transactions/order", [r["transactions_per_order"]]))
    seed = result.get("seed", SEED)
    rows.append(["seed: orders/s (100/min)", str(seed["orders_per_s"]), "", "-"])
    rows.append(["seed: in flight", str(seed["in_flight"]), "", "-"])
    return rows


def show(result: Mapping[str, Any]) -> None:
    print_table(table_rows(result), ["figure", "measured (median of rounds)", "aim", "met"])


# -- CLI ---------------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["all", "http", "steady", "memory", "router", "report"])
    parser.add_argument("files", nargs="*", type=Path, help="report: result JSON files")
    parser.add_argument("--orders", type=int, default=10_000, help="orders per HTTP burst")
    parser.add_argument("--concurrency", type=int, default=64, help="connections of the HTTP burst")
    parser.add_argument("--rounds", type=int, default=3, help="bare + ingress bursts, repeated")
    parser.add_argument("--warmup", type=int, default=1000, help="orders sent before measuring")
    parser.add_argument("--rate", type=float, default=100.0, help="steady: orders/s, open loop")
    parser.add_argument("--duration", type=float, default=30.0, help="steady: seconds")
    parser.add_argument("--mem-orders", type=int, default=10_000, help="memory: orders in flight")
    parser.add_argument("--mem-exec-ms", type=int, default=300_000, help="memory: venue execution latency")
    parser.add_argument("--exec-latency-ms", default="0", help="VENUE_EXEC_LATENCY_MS of http/steady")
    parser.add_argument("--partitions", type=int, default=12)
    cpus = "1" if (os.cpu_count() or 1) > 1 else None
    parser.add_argument("--loadgen-cpus", default=cpus, help="taskset -c for wrk/loadgen ('' = unpinned)")
    parser.add_argument("--server-cpus", default=None, help="taskset -c for the api and bare servers")
    parser.add_argument("--profile", default="", help="py-spy these services in round 1: router,api,venue")
    parser.add_argument("--no-router", action="store_true", help="http: ingress alone, nobody routes")
    parser.add_argument("--generator", choices=["auto", "wrk", "aiohttp"], default="auto", help="http load")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.what == "report":
        for path in args.files:
            print(f"# {path}")
            show(json.loads(path.read_text()))
        return 0
    opts = Options(
        orders=args.orders, concurrency=args.concurrency, rounds=args.rounds, warmup=args.warmup,
        rate=args.rate, duration_s=args.duration, mem_orders=args.mem_orders, mem_exec_ms=args.mem_exec_ms,
        partitions=args.partitions, loadgen_cpus=args.loadgen_cpus or None,
        server_cpus=args.server_cpus or None, exec_latency_ms=args.exec_latency_ms,
        profile=tuple(n for n in args.profile.split(",") if n), router=not args.no_router,
        generator=args.generator,
    )  # fmt: skip
    tmp = RESULTS / f"run-{time.strftime('%Y%m%dT%H%M%S')}"
    result = asyncio.run(run(args.what, opts, tmp))
    result["logs"] = str(tmp)
    path = write_result(f"pipeline-{args.what}", result)
    show(result)
    print(f"\nresult: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
