"""WebSocket fan-out benchmark: `oee gateway` with N connections following orders while the pipeline runs.

    uv run python -m bench.bench_fanout                       # 5,000 connections, 100 orders/s, fan-out 20
    uv run python -m bench.bench_fanout --connections 1000 --rate 50 --fanout 10 --duration 20
    uv run python -m bench.bench_fanout --direct             # no router: the gateway alone on the log
    uv run --with py-spy python -m bench.bench_fanout --profile   # plus a profile of the gateway

Processes: `oee venue` (execution latency 0) and `oee router` on topics of their own, `oee gateway` alone,
and a load generator (`bench.bench_fanout client`, a process of its own, uvloop) that opens the connections
on `/ws`, then for each order it creates subscribes `fanout` connections to it *before* appending its
`OrderRequested` to the intake, so every frame is a live one. It measures, per frame:

- `event -> client`: from the event's `occurred_at` (`ts`, written by the router just before its
  transaction commits) to receipt: what a client sees;
- `log -> client`: from when a plain read_committed consumer in the load generator first saw the event in
  the log to receipt: the part the gateway adds (the ratio to the first is what survives a noisy box).

The orchestrator samples the gateway's RSS and CPU (psutil) and checks every subscription ended complete
(seq 1..n, then `end`). Figures are printed and written to bench/results/fanout-*.json.

`--direct` leaves the router out: the load generator appends each order's five events to the log itself,
one every 20 ms, stamped as appended. That measures the gateway's own ceiling, apart from the pipeline's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from msgspec.structs import replace

from bench import profiling
from bench.common import CpuMeter, latency_summary, machine, print_table, start_system, write_result
from events.codec import encode, headers_for, key_for
from events.envelope import Event, now
from events.topics import Topics
from services.config import Settings
from tests.e2e.harness import free_port, order_request, service, wait_http
from tests.samples import lifecycle_events


@dataclass
class ClientReport:
    connections: int
    connect_s: float
    orders: int
    subscriptions: int
    frames: int
    duration_s: float
    event_to_client_s: list[float] = field(default_factory=list)
    log_to_client_s: list[float] = field(default_factory=list)
    incomplete: int = 0
    closed_early: int = 0
    cpu_s: float = 0.0  # the load generator's own CPU seconds from the first order to the end


def raise_nofile(wanted: int) -> int:
    """Raise the open-files limit (one socket per connection, plus the broker's and the files')."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, wanted)) if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


# -- the load generator (its own process) ---------------------------------------------------------------------
class WsClient(asyncio.Protocol):
    """A minimal WebSocket client (RFC 6455, text frames, no extensions) for the load generator only.

    The `websockets` library costs tens of microseconds per message in Python; at 10,000 frames/s over 5,000
    connections the load generator, not the gateway, would be what is measured. Server frames are unmasked,
    so parsing is a few slices; client frames are masked as the RFC requires.
    """

    def __init__(self, on_text: Callable[[bytes, float], None]) -> None:
        self.on_text = on_text
        self.open: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._buf = bytearray()
        self._handshaken = False
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def handshake(self, host: str, path: str) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert self._transport is not None
        self._transport.write(request.encode())

    def send_text(self, text: bytes) -> None:
        mask = os.urandom(4)
        n = len(text)
        header = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
        masked = (int.from_bytes(text, "big") ^ key).to_bytes(n, "big")
        assert self._transport is not None
        self._transport.write(header + mask + masked)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        at = time.time()
        buf = self._buf
        buf += data
        if not self._handshaken:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.open.set_exception(RuntimeError(bytes(buf[:end]).decode(errors="replace")))
                return
            del buf[: end + 4]
            self._handshaken = True
            self.open.set_result(None)
        while len(buf) >= 2:
            opcode, n, start = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, start = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, start = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < start + n:
                return
            payload = bytes(buf[start : start + n])
            del buf[: start + n]
            if opcode == 1:
                self.on_text(payload, at)
            elif opcode == 8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                if not self.closed.done():
                    self.closed.set_result(code)
                self.close()
            elif opcode == 9 and self._transport is not None:  # ping: answer with a masked pong
                self._transport.write(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(1006)
        if not self.open.done():
            self.open.set_exception(ConnectionError("closed during the handshake"))


async def run_clients(args: argparse.Namespace) -> ClientReport:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topics = Topics.with_prefix(args.prefix)
    seen_in_log: dict[tuple[str, int], float] = {}

    # The reference: when the event became visible in the log to a plain read_committed consumer.
    reference = AIOKafkaConsumer(
        topics.events,
        bootstrap_servers=args.bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="latest",
        enable_auto_commit=False,
        fetch_max_wait_ms=20,
    )
    await reference.start()

    async def follow_log() -> None:
        while True:
            batches = await reference.getmany(timeout_ms=100)
            at = time.time()
            for records in batches.values():
                for r in records:
                    # seq is not in the key; the value's `"seq":N` is cheap to find without a full decode
                    value = r.value or b""
                    i = value.find(b'"seq":')
                    seq = int(value[i + 6 : value.find(b",", i)]) if i >= 0 else 0
                    seen_in_log[((r.key or b"").decode(), seq)] = at

    log_task = asyncio.create_task(follow_log())
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap, acks="all", enable_idempotence=True, linger_ms=2
    )
    await producer.start()

    report = ClientReport(args.connections, 0.0, 0, 0, 0, 0.0)
    got: dict[tuple[int, str], list[int]] = defaultdict(list)
    ended: set[tuple[int, str]] = set()
    receipts: list[tuple[str, int, float, int]] = []  # (order, seq, received at, ts ms)

    def receiver(i: int) -> Callable[[bytes, float], None]:
        def on_text(payload: bytes, at: float) -> None:
            frame = orjson.loads(payload)
            if "seq" in frame:
                got[(i, frame["orderId"])].append(frame["seq"])
                receipts.append((frame["orderId"], frame["seq"], at, frame["ts"]))
            elif frame["type"] == "end":
                ended.add((i, frame["orderId"]))

        return on_text

    loop = asyncio.get_running_loop()
    host, port = args.url.split("//", 1)[1].split("/", 1)[0].split(":")
    path = "/" + args.url.split("//", 1)[1].split("/", 1)[1]
    started = time.monotonic()
    sem = asyncio.Semaphore(200)  # handshakes in flight at once

    async def open_one(i: int) -> WsClient:
        async with sem:
            for attempt in range(5):
                try:
                    _, client = await loop.create_connection(lambda: WsClient(receiver(i)), host, int(port))
                    client.handshake(f"{host}:{port}", path)
                    await asyncio.wait_for(client.open, 60)
                    return client
                except (OSError, ConnectionError, TimeoutError):
                    await asyncio.sleep(0.5 * (attempt + 1))
            raise RuntimeError(f"connection {i} failed 5 times")

    sockets = await asyncio.gather(*(open_one(i) for i in range(args.connections)))
    report.connect_s = time.monotonic() - started
    print(f"client: {len(sockets)} connections open in {report.connect_s:.1f} s", flush=True)

    # Orders at a steady open-loop rate; each one followed by `fanout` connections, round-robin.
    tick = 0.02
    per_tick = args.rate * tick
    owed = 0.0
    next_conn = 0
    t0 = time.monotonic()
    cpu0 = time.process_time()
    ticks = 0
    subscribed: list[tuple[int, str]] = []
    # --direct: no router; this process appends each order's lifecycle to the event log itself, one
    # event per tick (20 ms apart), stamped when appended, so only the gateway sits between log and client.
    in_flight: list[list[Event]] = []
    while time.monotonic() - t0 < args.duration:
        ticks += 1
        owed += per_tick
        batch = []
        while owed >= 1:
            owed -= 1
            order = order_request("sell" if len(subscribed) % 2 else "buy", amount=1 + len(subscribed) % 5)
            batch.append(order)
            msg = orjson.dumps({"action": "subscribe", "orderId": order.order_id})
            for _ in range(args.fanout):
                i = next_conn % len(sockets)
                next_conn += 1
                sockets[i].send_text(msg)
                subscribed.append((i, order.order_id))
        if args.direct:
            in_flight += [lifecycle_events(order_id=o.order_id) for o in batch]
            stamp = now()
            for events in in_flight:
                event = replace(events.pop(0), occurred_at=stamp)
                await producer.send(
                    topics.events, encode(event), key=key_for(event), headers=headers_for(event)
                )
            in_flight = [events for events in in_flight if events]
        else:
            for order in batch:
                await producer.send(topics.requests, encode(order), key=key_for(order))
        report.orders += len(batch)
        await asyncio.sleep(max(0.0, t0 + ticks * tick - time.monotonic()))  # open loop: no drift
    while in_flight:  # the last orders' remaining events
        stamp = now()
        for events in in_flight:
            event = replace(events.pop(0), occurred_at=stamp)
            await producer.send(topics.events, encode(event), key=key_for(event), headers=headers_for(event))
        in_flight = [events for events in in_flight if events]
        await asyncio.sleep(tick)
    await producer.flush()
    report.subscriptions = len(subscribed)

    # Wait until every subscription ended (or a bound passes), then measure.
    deadline = time.monotonic() + 60
    while len(ended) < len(subscribed) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    report.duration_s = time.monotonic() - t0
    report.cpu_s = time.process_time() - cpu0
    for key in subscribed:
        seqs = got.get(key, [])
        if key not in ended or seqs != list(range(1, len(seqs) + 1)) or len(seqs) < 3:
            report.incomplete += 1
    codes = Counter(c.closed.result() for c in sockets if c.closed.done())
    report.closed_early = sum(codes.values())
    if codes:
        print(f"client: closed by the server: {dict(codes)}", flush=True)
    report.frames = len(receipts)
    for order_id, seq, at, ts in receipts:
        report.event_to_client_s.append(at - ts / 1000)
        logged = seen_in_log.get((order_id, seq))
        if logged is not None:
            report.log_to_client_s.append(at - logged)
    for client in sockets:
        client.close()
    log_task.cancel()
    await asyncio.gather(log_task, return_exceptions=True)
    await producer.stop()
    await reference.stop()
    return report


def client_main(args: argparse.Namespace) -> None:
    import uvloop

    raise_nofile(args.connections + 1000)
    report = uvloop.run(run_clients(args))
    Path(args.out).write_text(json.dumps(asdict(report)))


# -- the orchestrator -----------------------------------------------------------------------------------------
async def sample(pid: int, out: list[tuple[float, int, float]], every_s: float = 0.5) -> None:
    """(time, RSS bytes, CPU % of one core) of the gateway until cancelled."""
    proc = psutil.Process(pid)
    proc.cpu_percent()
    while True:
        await asyncio.sleep(every_s)
        try:
            out.append((time.time(), proc.memory_info().rss, proc.cpu_percent()))
        except psutil.Error:
            return


async def watch_stats(url: str, out: list[dict[str, Any]], every_s: float = 1.0) -> None:
    """The gateway's own view (tail lag, event loop lag) every second until cancelled."""
    while True:
        await asyncio.sleep(every_s)
        try:
            out.append(await gateway_stats(url))
        except httpx.HTTPError:
            pass


async def delete_topics(bootstrap: str, prefix: str) -> None:
    """The run's topics go with it: a shared broker should not collect 48 partitions per run."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


async def gateway_stats(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{url}/gateway/stats", timeout=10)).json()


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    raise_nofile(args.connections + 1000)  # inherited by the gateway and the load generator
    prefix = f"bench-fanout-{uuid.uuid4().hex[:8]}."
    tmp = Path(tempfile.mkdtemp(prefix="oee-fanout-"))
    system = await start_system(
        prefix, tmp, exec_latency_ms="0", partitions=args.partitions, api=False, router=not args.direct
    )
    settings: Settings = system.settings
    port = free_port()
    env = {
        "GATEWAY_PORT": str(port),
        "LOG_LEVEL": "WARNING",
        # Every connection is the one implicit `local` account's (no authentication here).
        "GATEWAY_MAX_ACCOUNT_CONNECTIONS": str(args.connections),
        # They all open at once: handshakes not yet upgraded count as HTTP connections.
        "HTTP_MAX_CONNECTIONS": str(args.connections + 1000),
    }
    gateway = service("gateway", settings, tmp, env).start()
    system.procs["gateway"] = gateway
    http_url = f"http://127.0.0.1:{port}"
    samples: list[tuple[float, int, float]] = []
    loadgen_samples: list[tuple[float, int, float]] = []
    watched: list[dict[str, Any]] = []
    try:
        await wait_http(f"{http_url}/health", gateway)
        while not (await gateway_stats(http_url))["ready"]:
            await asyncio.sleep(0.1)
        idle_rss = psutil.Process(gateway.pid).memory_info().rss
        sampler = asyncio.create_task(sample(gateway.pid, samples))
        out = tmp / "client.json"
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.bench_fanout", "client",
            "--url", f"ws://127.0.0.1:{port}/ws", "--bootstrap", settings.bootstrap_servers,
            "--prefix", prefix, "--connections", str(args.connections), "--rate", str(args.rate),
            "--fanout", str(args.fanout), "--duration", str(args.duration), "--out", str(out),
            *(["--direct"] if args.direct else []),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert client.stdout is not None
        line = await client.stdout.readline()  # "N connections open": the order flow starts now
        print(line.decode().strip(), flush=True)
        loadgen_sampler = asyncio.create_task(sample(client.pid, loadgen_samples))
        watcher = asyncio.create_task(watch_stats(http_url, watched))
        profiler = None
        if args.profile and profiling.available():
            profiler = await profiling.start("gateway", gateway.pid, tmp / "gateway.folded")
        connected_rss = psutil.Process(gateway.pid).memory_info().rss
        meter = CpuMeter(system.pids()).start()
        code = await client.wait()
        cpu = meter.stop()
        sampler.cancel()
        loadgen_sampler.cancel()
        watcher.cancel()
        if profiler is not None:
            print(profiling.render(await profiler.stop(), top=30))
        if code != 0:
            raise RuntimeError(f"load generator exited {code}")
        stats = await gateway_stats(http_url)
        report = ClientReport(**json.loads(out.read_text()))
    finally:
        system.stop()
        await delete_topics(settings.bootstrap_servers, prefix)
    peak_rss = max((s[1] for s in samples), default=0)
    busy = [s[2] for s in samples if s[2] > 0]
    return {
        "bench": "fanout",
        "machine": machine(),
        "command": " ".join(["python -m bench.bench_fanout", *sys.argv[1:]]),
        "params": vars(args),
        "connections": report.connections,
        "connect_s": round(report.connect_s, 2),
        "orders": report.orders,
        "subscriptions": report.subscriptions,
        "frames_delivered": report.frames,
        "frames_per_s": round(report.frames / args.duration, 1),
        "incomplete_subscriptions": report.incomplete,
        "closed_early": report.closed_early,
        "event_to_client": latency_summary(report.event_to_client_s),
        "log_to_client": latency_summary(report.log_to_client_s),
        "gateway_rss_mib": {
            "idle": round(idle_rss / 2**20, 1),
            "connected": round(connected_rss / 2**20, 1),
            "peak": round(peak_rss / 2**20, 1),
            "per_connection_kib": round((connected_rss - idle_rss) / max(1, report.connections) / 1024, 1),
        },
        "gateway_cpu_pct_mean": round(sum(busy) / len(busy), 1) if busy else 0.0,
        "loadgen_cpu_pct_mean": round(sum(lg) / len(lg), 1)
        if (lg := [x[2] for x in loadgen_samples[1:]])
        else 0.0,
        "loadgen_cpu_s": round(report.cpu_s, 2),
        "gateway_cpu_us_per_frame": round(cpu["cpu_s"].get("gateway", 0.0) / max(1, report.frames) * 1e6, 1),
        "cpu": cpu,
        "gateway_stats": stats,
        "gateway_tail_lag_ms_max": max((w["tailLagMs"] for w in watched), default=0.0),
        "gateway_loop_lag_ms_max": max((w["loopLagMs"] for w in watched), default=0.0),
        "gateway_gc_pause_ms_max": stats.get("gcPauseMaxMs", 0.0),
    }


def show(result: dict[str, Any]) -> None:
    e, g, m = result["event_to_client"], result["log_to_client"], result["gateway_rss_mib"]
    rows = [
        ["connections", f"{result['connections']} (open in {result['connect_s']} s)"],
        ["orders / subscriptions", f"{result['orders']} / {result['subscriptions']}"],
        ["frames delivered", f"{result['frames_delivered']} ({result['frames_per_s']}/s)"],
        ["incomplete / closed early", f"{result['incomplete_subscriptions']} / {result['closed_early']}"],
        ["event -> client p50/p99/max", f"{e['p50_ms']} / {e['p99_ms']} / {e['max_ms']} ms"],
        ["log -> client p50/p99/max", f"{g['p50_ms']} / {g['p99_ms']} / {g['max_ms']} ms"],
        ["gateway RSS idle/connected/peak", f"{m['idle']} / {m['connected']} / {m['peak']} MiB"],
        ["gateway RSS per connection", f"{m['per_connection_kib']} KiB"],
        ["gateway CPU (mean, % of a core)", str(result["gateway_cpu_pct_mean"])],
        ["gateway CPU per frame delivered (all work)", f"{result['gateway_cpu_us_per_frame']} us"],
        ["load generator CPU (mean, % of a core)", str(result["loadgen_cpu_pct_mean"])],
        [
            "gateway tail lag / loop lag / GC pause (max)",
            f"{result['gateway_tail_lag_ms_max']} / {result['gateway_loop_lag_ms_max']}"
            f" / {result['gateway_gc_pause_ms_max']} ms",
        ],
        ["CPU s by process", json.dumps({**result["cpu"]["cpu_s"], "loadgen": result["loadgen_cpu_s"]})],
        ["CPU s of all other processes (incl. load gen.)", str(result["cpu"]["cpu_s_others"])],
        ["machine busy", f"{result['cpu']['machine_busy_pct']} % of {result['machine']['nproc']} cores"],
    ]
    print_table(rows, ["fan-out", "value"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", nargs="?", default="run", choices=["run", "client"])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=100.0, help="orders per second")
    parser.add_argument("--fanout", type=int, default=20, help="connections following each order")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of order flow")
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--profile", action="store_true", help="py-spy the gateway (uv run --with py-spy)")
    parser.add_argument(
        "--direct", action="store_true", help="no router: append lifecycles to the log directly"
    )
    # load generator only
    parser.add_argument("--url")
    parser.add_argument("--bootstrap")
    parser.add_argument("--prefix")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.mode == "client":
        client_main(args)
        return
    result = asyncio.run(bench(args))
    show(result)
    print(f"written: {write_result('fanout', result)}")


if __name__ == "__main__":
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    main()
