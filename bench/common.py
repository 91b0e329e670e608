"""Shared pieces of the benchmarks: the machine, CPU accounting, percentiles, the system under test as
subprocesses (the e2e tests' own `service()` mechanism), a live reader of the order event log, and results.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from events.codec import decode, header_type
from events.topics import Topics
from services import config
from tests.e2e.harness import Proc, free_port, service, wait_http, wait_log

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
TERMINAL = ("OrderConfirmed", "OrderFailed")


# -- the machine -----------------------------------------------------------------------------------------
def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def code_version() -> str:
    """The commit the services ran from (a `git archive` snapshot carries it in `.bench-commit`)."""
    marker = REPO / ".bench-commit"
    if marker.exists():
        return f"{marker.read_text().strip()} (clean snapshot: git archive)"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True)
    return head.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "code": code_version(),
        "loadavg_start": loadavg(),
    }


# -- statistics --------------------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted `values`."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def latency_summary(values_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds of latencies given in seconds."""
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p90_ms": round(percentile(ms, 90), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2) if ms else float("nan"),
    }


# -- CPU accounting ----------------------------------------------------------------------------------------
def broker_pid(port: int = 9092) -> int | None:
    """The process listening on the broker's port (for CPU accounting only)."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return int(conn.pid)
    except psutil.AccessDenied:
        return None
    return None


def _cpu_seconds(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return 0.0


@dataclass
class CpuMeter:
    """CPU seconds used by named processes and by the whole machine between `start()` and `stop()`."""

    pids: Mapping[str, int]
    _t0: float = 0.0
    _busy0: float = 0.0
    _procs0: dict[str, float] = field(default_factory=dict)
    _load0: list[float] = field(default_factory=list)

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return float(t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0))

    def start(self) -> CpuMeter:
        self._t0, self._busy0, self._load0 = time.monotonic(), self._busy(), loadavg()
        self._procs0 = {name: _cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def stop(self) -> dict[str, Any]:
        wall = time.monotonic() - self._t0
        busy = self._busy() - self._busy0
        procs = {name: _cpu_seconds(pid) - self._procs0[name] for name, pid in self.pids.items()}
        cores = os.cpu_count() or 1
        return {
            "wall_s": round(wall, 3),
            "machine_busy_pct": round(100 * busy / (wall * cores), 1),  # of all cores
            "cpu_s": {name: round(s, 2) for name, s in procs.items()},
            "cpu_s_others": round(busy - sum(procs.values()), 2),  # everything else on the box
            "loadavg_before": self._load0,
            "loadavg_after": loadavg(),
        }


# -- the system under test -----------------------------------------------------------------------------------
def settings_for(prefix: str) -> config.Settings:
    return dataclasses.replace(config.load(), topic_prefix=prefix)


def create_topics(settings: config.Settings, partitions: int) -> None:
    """`oee topics create` under the run's prefix."""
    env = dict(
        os.environ,
        KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        DATABASE_URL=settings.database_url,
        OEE_TOPIC_PREFIX=settings.topic_prefix,
        OEE_PARTITIONS=str(partitions),
    )
    cmd = [sys.executable, "-m", "services.cli", "topics", "create"]
    subprocess.run(cmd, env=env, check=True, cwd=REPO, capture_output=True)


def pinned(proc: Proc, cpus: str | None) -> Proc:
    """Run `proc` under `taskset -c cpus` (unchanged when cpus is None)."""
    if cpus is not None:
        proc.argv = ["taskset", "-c", cpus, *proc.argv]
    return proc


@dataclass
class System:
    """venue + router (+ api) as subprocesses on topics of their own."""

    settings: config.Settings
    partitions: int
    tmp: Path
    procs: dict[str, Proc] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)

    @property
    def topics(self) -> Topics:
        return Topics.with_prefix(self.settings.topic_prefix)

    def pids(self) -> dict[str, int]:
        pids = {name: proc.pid for name, proc in self.procs.items() if proc.alive()}
        pids["bench"] = os.getpid()  # this process: the log reader, the orchestration
        kafka = broker_pid(int(self.settings.bootstrap_servers.rsplit(":", 1)[1]))
        if kafka is not None:
            pids["kafka"] = kafka
        return pids

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()


async def start_system(
    prefix: str,
    tmp: Path,
    *,
    exec_latency_ms: str,
    partitions: int = 12,
    api: bool = True,
    bare: bool = False,
    router: bool = True,
    server_cpus: str | None = None,
) -> System:
    """Topics, then `oee venue`, `oee router` and `oee api` (each optional but the venue) and the bare app,
    all ready."""
    settings = settings_for(prefix)
    create_topics(settings, partitions)
    system = System(settings, partitions, tmp)
    venue_port = free_port()
    venue_env = {"VENUE_PORT": str(venue_port), "VENUE_SEED": "7", "VENUE_EXEC_LATENCY_MS": exec_latency_ms}
    system.urls["venue"] = f"http://127.0.0.1:{venue_port}"
    system.procs["venue"] = service("venue", settings, tmp, venue_env).start()
    if router:
        router_env = dict(venue_env, VENUE_URL=system.urls["venue"])
        system.procs["router"] = service("router", settings, tmp, router_env).start()
    if api:
        port = free_port()
        system.urls["api"] = f"http://127.0.0.1:{port}"
        # One account drives the whole load here: its order limits would cap what is being measured.
        api_env = {"PORT": str(port), "ACCOUNT_ORDER_RATE": "0", "ACCOUNT_MAX_OPEN_ORDERS": "0"}
        system.procs["api"] = pinned(service("api", settings, tmp, api_env), server_cpus).start()
    if bare:
        port = free_port()
        system.urls["bare"] = f"http://127.0.0.1:{port}"
        proc = service("api", settings, tmp, {})
        proc.name, proc.log = "bare", tmp / f"bare-{port}.log"
        proc.argv = [sys.executable, "-m", "bench.bare_app", "--port", str(port)]
        system.procs["bare"] = pinned(proc, server_cpus).start()
    try:
        await wait_http(f"{system.urls['venue']}/health", system.procs["venue"])
        if router:
            await wait_log(system.procs["router"], "partition assigned", count=partitions, timeout=120)
        for name in ("api", "bare"):
            if name in system.procs:
                await wait_http(f"{system.urls[name]}/ready", system.procs[name])
    except BaseException:
        system.stop()
        raise
    return system


# -- the event log, read live ---------------------------------------------------------------------------
@dataclass(slots=True)
class Requested:
    seen: float
    occurred_at: float
    key: str | None


@dataclass(slots=True)
class Terminal:
    type: str
    seen: float
    occurred_at: float


@dataclass
class LogWatch:
    """Follows the order event log (read_committed, from the start or the end) in the background and notes,
    per order, when this process first saw its request, its OrderSubmitted and its terminal event. Only the
    request and the terminal event are decoded; the others are counted from their `type` header."""

    bootstrap: str
    topic: str
    min_bytes: int = 1  # > 1: fewer, larger fetches under load; a record may then be seen max_wait_ms late
    max_wait_ms: int = 20
    from_end: bool = False
    requested: dict[str, Requested] = field(default_factory=dict)
    terminal: dict[str, Terminal] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    submitted: dict[str, float] = field(default_factory=dict)  # order id -> when OrderSubmitted was seen
    keyed: dict[str, dict[str, float]] = field(default_factory=dict)  # key tag -> order id -> send time
    duplicate_terminals: int = 0
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LogWatch:
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            enable_auto_commit=False,
            fetch_min_bytes=self.min_bytes,
            fetch_max_wait_ms=self.max_wait_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await self._consumer.start()
        if self.from_end:
            await self._consumer.seek_to_end()
        self._task = asyncio.create_task(self._run(), name="logwatch")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None and self._consumer is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        await self._consumer.stop()

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=100, max_records=5000)
            seen = time.time()
            for records in batches.values():
                for record in records:
                    self._note(record.key, record.value, record.headers, seen)

    def _note(self, key: bytes | None, value: bytes | None, headers: Any, seen: float) -> None:
        kind = header_type(headers) or "?"
        self.counts[kind] += 1
        order_id = (key or b"").decode()
        if kind == "OrderSubmitted":
            self.submitted.setdefault(order_id, seen)
        elif kind == "OrderRequested":
            event = decode(value or b"")
            key_ = getattr(event.data, "idempotency_key", None)
            self.requested[order_id] = Requested(seen, event.occurred_at.timestamp(), key_)
            if key_ is not None and key_.count("-") >= 3:  # the wrk script's "TAG-thread-n-µs"
                tag, _, _, sent_us = key_.rsplit("-", 3)
                if sent_us.isdigit():
                    self.keyed.setdefault(tag, {})[order_id] = int(sent_us) / 1e6
        elif kind in TERMINAL:
            if order_id in self.terminal:
                self.duplicate_terminals += 1
                return
            self.terminal[order_id] = Terminal(kind, seen, decode(value or b"").occurred_at.timestamp())

    async def until(self, done: Callable[[LogWatch], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done(self):
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            if self._task is not None and self._task.done():
                self._task.result()
            await asyncio.sleep(0.1)

    async def until_terminal(self, order_ids: Iterable[str], timeout: float) -> None:
        ids = list(order_ids)
        await self.until(lambda w: all(i in w.terminal for i in ids), timeout, f"{len(ids)} terminal events")


async def end_offsets(bootstrap: str, topics: Sequence[str], partitions: int) -> dict[str, int]:
    """The sum of each topic's end offsets: records plus transaction markers (one per committed or aborted
    transaction per partition it wrote to), so `end - records` counts the transactions that touched it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        sums = {}
        for topic in topics:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            sums[topic] = sum((await consumer.end_offsets(tps)).values())
        return sums
    finally:
        await consumer.stop()


async def sample_rss(pid: int, every_s: float, out: list[tuple[float, int]]) -> None:
    """Append (time, RSS bytes of `pid` and its children) every `every_s` until cancelled."""
    proc = psutil.Process(pid)
    while True:
        try:
            rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
        except psutil.Error:
            return
        out.append((time.time(), rss))
        await asyncio.sleep(every_s)


# -- results ---------------------------------------------------------------------------------------------
def write_result(name: str, data: Mapping[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def print_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = " | ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
