"""What a Kafka transaction costs here, shaped as the router commits them (one transactional producer per
intake partition, aiokafka, acks=all, idempotent, linger 0).

    uv run python -m bench.bench_txn cost --producers 12,1 --records 5,50,500 --seconds 8
    uv run python -m bench.bench_txn gap

`cost`: each producer loops: begin, `records` events to its partition of `orders.events` plus one state
record to `orders.router-state`, the consumed offset of its `orders.requests` partition, commit. Prints
transactions/s, records/s and the CPU seconds the broker (the process listening on the bootstrap port; a
shared broker also serves others, so compare rows of one run) and this client spent per transaction.

`gap`: one producer, sequential transactions with a pause between them, with and without offsets: how long
a transaction takes when it starts right after the previous one (the broker answers CONCURRENT_TRANSACTIONS
while it still writes the previous markers, and aiokafka retries after 20 ms, or after retry_backoff_ms =
100 ms for AddOffsetsToTxn and EndTxn).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

import psutil
from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition

from bench.common import (
    broker_pid,
    create_topics,
    latency_summary,
    loadavg,
    machine,
    print_table,
    settings_for,
    write_result,
)
from events.topics import Topics

VALUE = b"x" * 300  # about one event


def transactional(bootstrap: str, transactional_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=transactional_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=0,
    )


async def one_transaction(
    producer: AIOKafkaProducer, topics: Topics, partition: int, records: int, offset: int | None, group: str
) -> None:
    async with producer.transaction():
        for _ in range(records):
            await producer.send(topics.events, VALUE, key=b"k", partition=partition)
        await producer.send(topics.router_state, VALUE, key=b"k", partition=partition)
        if offset is not None:
            tp = TopicPartition(topics.requests, partition)
            await producer.send_offsets_to_transaction({tp: offset}, group)


async def producer_loop(
    bootstrap: str,
    topics: Topics,
    partition: int,
    records: int,
    until: float,
    group: str,
    offsets: bool = True,
) -> int:
    producer = transactional(bootstrap, f"{group}.{partition}")
    await producer.start()
    done = 0
    try:
        while time.monotonic() < until:
            await one_transaction(producer, topics, partition, records, done + 1 if offsets else None, group)
            done += 1
    finally:
        await producer.stop()
    return done


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


async def cost(
    bootstrap: str, topics: Topics, producers: int, records: int, seconds: float, offsets: bool = True
) -> dict:
    kafka = psutil.Process(broker_pid(int(bootstrap.rsplit(":", 1)[1])) or os.getpid())
    me = psutil.Process()
    group = f"txnbench-{producers}-{records}-{int(time.time())}"
    k0, c0, t0, load0 = cpu_s(kafka), cpu_s(me), time.monotonic(), loadavg()
    counts = await asyncio.gather(
        *(
            producer_loop(bootstrap, topics, p, records, t0 + seconds, group, offsets)
            for p in range(producers)
        )
    )
    wall, txns = time.monotonic() - t0, sum(counts)
    kafka_s, client_s = cpu_s(kafka) - k0, cpu_s(me) - c0
    return {
        "producers": producers,
        "records_per_txn": records + 1,
        "offsets": offsets,
        "transactions": txns,
        "txn_per_s": round(txns / wall, 1),
        "records_per_s": round(txns * (records + 1) / wall, 1),
        "broker_ms_per_txn": round(1000 * kafka_s / txns, 3),
        "client_ms_per_txn": round(1000 * client_s / txns, 3),
        "loadavg": [load0, loadavg()],
    }


async def gap(bootstrap: str, topics: Topics, pause_s: float, offsets: bool, n: int = 60) -> dict:
    group = f"txngap-{int(time.time() * 1000)}"
    producer = transactional(bootstrap, group)
    await producer.start()
    durations = []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            await one_transaction(producer, topics, 0, 5, i + 1 if offsets else None, group)
            durations.append(time.perf_counter() - t0)
            await asyncio.sleep(pause_s)
    finally:
        await producer.stop()
    return {"pause_ms": pause_s * 1000, "offsets": offsets, **latency_summary(durations[1:])}


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    producers = [int(x) for x in args.producers.split(",")]
    settings = settings_for(f"benchtxn{int(time.time())}-")
    create_topics(settings, max(producers))
    topics, bootstrap = Topics.with_prefix(settings.topic_prefix), settings.bootstrap_servers
    rows = []
    if args.mode == "cost":
        for p in producers:
            for records in (int(x) for x in args.records.split(",")):
                for offsets in (True, False) if args.compare_offsets else (True,):
                    rows.append(await cost(bootstrap, topics, p, records, args.seconds, offsets))
                    print(rows[-1], flush=True)
    else:
        for offsets in (False, True):
            for pause in (0.0, 0.005, 0.03):
                rows.append(await gap(bootstrap, topics, pause, offsets))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["cost", "gap"])
    parser.add_argument("--producers", default="12,1", help="cost: comma list of concurrent producers")
    parser.add_argument("--records", default="5,50,500", help="cost: comma list of events per transaction")
    parser.add_argument("--seconds", type=float, default=8.0, help="cost: seconds per row")
    parser.add_argument(
        "--compare-offsets", action="store_true", help="cost: each row also without the consumed offsets"
    )
    args = parser.parse_args()
    info = machine()
    rows = asyncio.run(run(args))
    path = write_result(f"txn-{args.mode}", {"machine": info, "rows": rows, "loadavg_end": loadavg()})
    keys = list(rows[0]) if rows else []
    keys = [k for k in keys if k not in ("loadavg", "n")]
    print_table([[str(r[k]) for k in keys] for r in rows], keys)
    print(f"\nloadavg {info['loadavg_start']} -> {loadavg()}\nresult: {path}")


if __name__ == "__main__":
    main()
