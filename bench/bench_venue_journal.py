"""What the venue's write-ahead journal costs per swap (decision 0009): submit + settle with and without it.

    uv run python -m bench.bench_venue_journal                  # 4,000 swaps per row, journal in $TMPDIR
    uv run python -m bench.bench_venue_journal --swaps 10000 --dir .stack/venue   # on the ledger's disk

One simulated venue in this process (no HTTP), execution latency 0, so every swap is one acceptance and one
settlement: two journal records. Rows: the ledger in memory (no journal: the ceiling), then the journal
with `concurrency` submits in flight at once (1: every submit waits for its own fdatasync, the worst case;
500: what a router's batch sends in one event-loop turn). Per row: wall time per swap, CPU per swap,
journal writes (= fdatasyncs) per swap. First, the disk's own ceiling: p50/p99 of a 300-byte append +
fdatasync on the same file system. Speed is printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from services.venue.interface import SwapStatus
from services.venue.journal import OsFile
from services.venue.ledger import Ledger
from services.venue.pool import RAYDIUM
from services.venue.simulator import SimulatedVenue

TOKENS = ("SOL", "USDC", "ETH", "USDT")


class CountingFile(OsFile):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.syncs = 0

    def sync(self) -> None:
        self.syncs += 1
        super().sync()


def fsync_ceiling(directory: Path, samples: int = 500) -> tuple[float, float]:
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    times = []
    try:
        for _ in range(samples):
            started = time.perf_counter()
            os.write(fd, b"x" * 299 + b"\n")
            os.fdatasync(fd)
            times.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99)]


async def run(swaps: int, concurrency: int, journal: Path | None) -> dict[str, float]:
    files: list[CountingFile] = []

    def open_file(path: Path) -> CountingFile:
        files.append(CountingFile(path))
        return files[-1]

    ledger = Ledger(journal, open_file=open_file) if journal else Ledger()
    venue = SimulatedVenue("raydium", RAYDIUM, TOKENS, seed=1, execution_latency_s=0.0, ledger=ledger)
    ids = [f"bench-{uuid.uuid4()}" for _ in range(swaps)]
    settled = 0
    done = asyncio.Event()

    def on_settled(status: SwapStatus) -> None:
        nonlocal settled
        settled += 1
        if settled == swaps:
            done.set()

    venue.on_settled(on_settled)
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, swaps, concurrency):
        chunk = ids[start : start + concurrency]
        await asyncio.gather(*(venue.submit(i, "USDC", "USDT", "sell", 10.0, 0.5) for i in chunk))
    await done.wait()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    syncs = files[0].syncs if files else 0
    await venue.aclose()
    return {
        "us_per_swap": wall / swaps * 1e6,
        "cpu_us_per_swap": cpu / swaps * 1e6,
        "syncs_per_swap": syncs / swaps,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--swaps", type=int, default=4000)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=args.dir, prefix="venue-journal-"))
    try:
        p50, p99 = fsync_ceiling(scratch)
        print(f"disk: 300-byte append + fdatasync p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms ({scratch})")
        print(f"{'row':<28} {'wall µs/swap':>13} {'CPU µs/swap':>12} {'fsyncs/swap':>12}")
        rows = [("memory (no journal)", 500, None)]
        rows += [(f"journal, {c} in flight", c, scratch / f"ledger-{c}.jsonl") for c in (1, 16, 500)]
        for label, concurrency, journal in rows:
            swaps = min(args.swaps, 1000) if concurrency == 1 else args.swaps  # serial: bounded run time
            r = await run(swaps, concurrency, journal)
            print(
                f"{label:<28} {r['us_per_swap']:>13.0f} {r['cpu_us_per_swap']:>12.0f} {r['syncs_per_swap']:>12.3f}"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
