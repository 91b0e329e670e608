"""`oee drill`, start to end: the stack up, load, subscribers and faults together, everything finished, then
the checker's verdict (docs/drill.md says what each step proves)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from events.topics import Topics
from services.drill.eventlog import LogWatcher
from services.drill.faults import Injector, whole
from services.drill.ledgers import journal_paths, read_swaps
from services.drill.load import Posting
from services.drill.options import DrillOptions
from services.drill.pacing import Pacing
from services.drill.plan import expected_span_s, plan
from services.drill.projection import ProjectionWatcher, read_projection
from services.drill.proxy import ReplyDropper
from services.drill.recovery import Completions
from services.drill.stack import DrillStack, free_port
from services.drill.subscribers import Subscriber
from services.drill.table import legend, render
from services.drill.verdict import Evidence, FaultRecord, Verdict, judge

WHOLE_TIMEOUT_S = 180.0  # a fault is not injected into a stack that is still missing a part of itself
ALL_PARTITIONS_GRACE_S = 45.0  # after the first order recovered, how long to wait to see every partition's


class DrillError(RuntimeError):
    """The drill could not run (its stack did not start): one line saying why."""


@dataclass
class Progress:
    """Where the fault plan stands, for the pace of the orders."""

    kinds: list[str]
    interval_s: float
    options: DrillOptions
    done: int = 0  # faults injected and recovered from (or given up on)
    injected: int = 0  # faults injected: the reserve of orders held back for each is released then

    def remaining_s(self) -> float:
        return expected_span_s(self.kinds[self.done :], self.interval_s, self.options.durations)

    @property
    def left(self) -> int:
        return len(self.kinds) - self.done


class Drill:
    def __init__(self, options: DrillOptions, say: Callable[[str], None]) -> None:
        self.options = options
        self.say = say
        self.seed = options.seed if options.seed is not None else random.SystemRandom().randrange(1 << 31)
        self.rng = random.Random(self.seed)
        self.kinds = plan(options.rounds, self.seed)
        self.temporary = options.directory is None
        self.root = options.directory or Path(tempfile.mkdtemp(prefix="oee-drill-"))
        self.started = time.monotonic()
        self.completions = Completions(options.partitions)
        self.faults: list[FaultRecord] = []
        self.subscribers: list[Subscriber] = []
        self.loads = [os.getloadavg()]

    def elapsed(self) -> str:
        return f"[{time.monotonic() - self.started:6.1f} s]"

    async def run(self) -> Verdict:
        o = self.options
        self.root.mkdir(parents=True, exist_ok=True)
        _log_to(self.root / "drill.log")
        proxy_port = free_port()
        extra = {"LOG_LEVEL": "INFO", "VENUE_SEED": str(self.seed)}
        if o.venue_latency_ms:
            extra["VENUE_EXEC_LATENCY_MS"] = o.venue_latency_ms
        stack = DrillStack.create(
            self.root,
            brokers=o.brokers,
            routers=o.routers,
            apis=o.apis,
            partitions=o.partitions,
            proxy_port=proxy_port,
            **extra,
        )
        proxy = await ReplyDropper("127.0.0.1", stack.venue_port, port=proxy_port).start()
        verdict: Verdict | None = None
        try:
            self.say(
                f"{self.elapsed()} starting {o.brokers} brokers, PostgreSQL and the services in {self.root}"
            )
            up = await asyncio.to_thread(stack.oee, "up", timeout=600)
            if up.returncode != 0:
                raise DrillError(f"oee up failed: {(up.stderr or up.stdout).strip()[-400:]}")
            self.say(f"{self.elapsed()} up: {', '.join(stack.components())}")
            verdict = await self._drive(stack, proxy)
            return verdict
        finally:
            await proxy.aclose()
            await self._finish(stack, verdict)

    async def _drive(self, stack: DrillStack, proxy: ReplyDropper) -> Verdict:
        topics = Topics.with_prefix("")
        c = self.completions
        watcher = LogWatcher(
            stack.settings.bootstrap_servers, topics.events, lambda i, t: c.logged.setdefault(i, t)
        )
        await watcher.start()
        try:
            return await self._drive_watched(stack, proxy, watcher)
        finally:
            await watcher.stop()

    async def _drive_watched(self, stack: DrillStack, proxy: ReplyDropper, watcher: LogWatcher) -> Verdict:
        o = self.options
        topics = Topics.with_prefix("")
        c = self.completions
        projection = ProjectionWatcher(
            stack.settings.database_url,
            lambda: [i for i in c.acked if i not in c.projected],
            lambda i, t: c.projected.setdefault(i, t),
        )
        self.subscribers = [
            Subscriber(n, stack.gateway, lambda i, t: c.streamed.setdefault(i, t))
            for n in range(o.subscribers)
        ]

        def acked(order_id: str, partition: int, at: float) -> None:
            if order_id in c.acked:
                return
            c.ack(order_id, partition, at)
            if self.subscribers:
                c.followed.add(order_id)
                self.subscribers[len(c.acked) % len(self.subscribers)].follow(order_id)

        posting = Posting(stack.apis, f"drill-{self.seed}", acked, o.order_deadline_s, o.clients)
        await posting.open()
        watching = asyncio.Event()
        background = [
            asyncio.create_task(watcher.run(watching)),
            asyncio.create_task(projection.run(watching)),
            *(asyncio.create_task(s.run(watching)) for s in self.subscribers),
        ]
        progress = Progress(self.kinds, o.interval_s, o)
        injector = Injector(stack, proxy, o.durations, self.rng)
        our_topics = [topics.requests, topics.events, topics.router_state]
        pacing = asyncio.create_task(self._pace(posting, progress))
        try:
            await self._inject_all(stack, injector, progress, our_topics)
            await pacing
            self.say(f"{self.elapsed()} all {o.orders} orders released; waiting for their answers")
            await posting.drain()
            await self._settle(stack)
        finally:
            pacing.cancel()
            watching.set()
            await asyncio.gather(pacing, *background, return_exceptions=True)
            await posting.close()
        await self._read_to_the_end(watcher)
        rows, event_rows = await read_projection(stack.settings.database_url)
        evidence = Evidence(
            completions=c,
            events=dict(watcher.events),
            undecodable=watcher.undecodable,
            swaps=read_swaps(journal_paths(stack.ledger_path)),
            rows=rows,
            event_rows=event_rows,
            streams=[s for sub in self.subscribers for s in sub.streams()],
            faults=self.faults,
            planned=self.kinds,
            answers=posting.answers,
            gave_up=posting.gave_up,
            refused=posting.refused,
        )
        return judge(evidence)

    async def _pace(self, posting: Posting, progress: Progress) -> None:
        o = self.options
        pace = Pacing(reserve_each=Pacing.reserve_for(o.orders, len(self.kinds), o.partitions))
        for n in range(o.orders):
            while pace.held(o.orders - n, len(self.kinds) - progress.injected):
                await asyncio.sleep(0.2)  # until the next fault is injected (the load's pace)
            rate = pace.rate(self.options.orders - n, progress.remaining_s(), progress.left)
            await asyncio.sleep(1 / rate)  # the load's pace, not a synchronisation
            posting.release(n)

    async def _inject_all(
        self, stack: DrillStack, injector: Injector, progress: Progress, topics: list[str]
    ) -> None:
        last = time.monotonic()
        for kind in self.kinds:
            missing = await self._until_whole(stack, topics)
            if missing:
                self.say(f"{self.elapsed()} still {missing} after {WHOLE_TIMEOUT_S:.0f} s; injecting anyway")
            await asyncio.sleep(max(0.0, last + self.options.interval_s - time.monotonic()))  # the fault pace
            record = await injector.inject(kind)
            progress.injected += 1
            last = time.monotonic()
            if record.error is None:
                record = await self._until_recovered(record)
            self.faults.append(record)
            progress.done += 1
            measured = self.completions.recovered(record.injected_at)
            views = ", ".join(
                f"{k} {_s(v)}" for k, v in self.completions.first_views(record.injected_at).items()
            )
            self.say(
                f"{self.elapsed()} {kind:<20} {record.target:<36} "
                + (
                    f"FAILED: {record.error}"
                    if record.error
                    else f"recovered: first {_s(measured.first_s)} ({views}), every partition {_s(measured.all_s)}"
                    + (f"  NOT RECOVERED: {record.unrecovered}" if record.unrecovered else "")
                )
                + f"; {len(self.completions.acked)}/{self.options.orders} acknowledged"
            )

    async def _until_whole(self, stack: DrillStack, topics: list[str]) -> str | None:
        deadline = time.monotonic() + WHOLE_TIMEOUT_S
        while (missing := await whole(stack, topics)) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        return missing

    async def _until_recovered(self, record: FaultRecord) -> FaultRecord:
        """Until an order acknowledged after the fault has completed on every partition (or, after a grace,
        on one: a partition may simply get no order for a while); a fault without even that within the
        recovery deadline is recorded as not recovered."""
        deadline = record.injected_at + self.options.recovery_deadline_s
        while True:
            measured = self.completions.recovered(record.injected_at)
            now = time.time()
            if measured.all_s is not None:
                return record
            if (
                measured.first_s is not None
                and now > record.injected_at + measured.first_s + ALL_PARTITIONS_GRACE_S
            ):
                return record
            if now > deadline and measured.first_s is None:
                why = f"no order acknowledged after it completed within {self.options.recovery_deadline_s:.0f} s"
                return dataclasses.replace(record, unrecovered=why)
            await asyncio.sleep(0.5)

    async def _settle(self, stack: DrillStack) -> None:
        """Until every acknowledged order is complete in every view and no swap is pending at a venue."""
        deadline = time.monotonic() + self.options.settle_timeout_s
        c = self.completions
        while True:
            unfinished = [o for o in c.acked if c.complete_at(o) is None]
            pending = read_swaps(journal_paths(stack.ledger_path)).pending()
            if not unfinished and not pending:
                self.say(
                    f"{self.elapsed()} every acknowledged order complete in the log, the projection and its stream"
                )
                return
            if time.monotonic() > deadline:
                self.say(
                    f"{self.elapsed()} after {self.options.settle_timeout_s:.0f} s still {len(unfinished)} "
                    f"orders unfinished, {len(pending)} swaps pending: checking what there is"
                )
                return
            await asyncio.sleep(1.0)

    async def _read_to_the_end(self, watcher: LogWatcher, quiet_s: float = 2.0) -> None:
        """Read the log to its end, then on for `quiet_s` without news (a late duplicate would show)."""
        deadline = time.monotonic() + 120
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            if await watcher.poll(200):
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > quiet_s and await watcher.caught_up():
                return

    async def _finish(self, stack: DrillStack, verdict: Verdict | None) -> None:
        self.loads.append(os.getloadavg())
        if verdict is not None:
            report = self.root / "drill-report.json"
            report.write_text(json.dumps(self.report(verdict), indent=1, default=str))
            if self.options.report is not None:
                shutil.copyfile(report, self.options.report)
        if self.options.keep:
            self.say(f"stack left running: OEE_STATE_DIR={stack.settings.stack.state_dir} oee status | down")
            return
        passed = verdict is not None and verdict.ok
        purge = passed and self.temporary
        with contextlib.suppress(Exception):
            await asyncio.to_thread(stack.oee, "down", *(["--purge"] if purge else []), timeout=300)
        if purge:
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            self.say(f"the stack's data and logs are kept in {self.root} (stopped)")

    def heading(self, verdict: Verdict) -> str:
        o = self.options
        load = " / ".join(f"{a:.1f}" for a, _, _ in self.loads)
        return (
            f"oee drill: {o.orders} orders, {o.brokers} brokers, {o.routers} routers, {o.apis} APIs, 1 gateway, "
            f"{o.subscribers} subscribers, {o.partitions} partitions; {len(self.kinds)} faults about every "
            f"{o.interval_s:g} s (pause {o.broker_pause_s:g} s, PostgreSQL down {o.postgres_down_s:g} s, replies "
            f"lost {o.drop_replies_s:g} s); seed {self.seed}; {time.monotonic() - self.started:.0f} s; "
            f"load average at start / end {load} on {os.cpu_count()} cores"
        )

    def report(self, verdict: Verdict) -> dict[str, Any]:
        return {
            "heading": self.heading(verdict),
            "options": {k: str(v) for k, v in dataclasses.asdict(self.options).items()},
            "seed": self.seed,
            "ok": verdict.ok,
            "acknowledged": verdict.acknowledged,
            "answers": dict(verdict.answers),
            "faults": [dataclasses.asdict(f) for f in self.faults],
            "recovery": {k: dataclasses.asdict(r) for k, r in verdict.recovery.items()},
            "failures": verdict.failures(),
            "subscribers": {
                "connects": sum(s.connects for s in self.subscribers),
                "not_found_retries": sum(s.not_found for s in self.subscribers),
            },
        }


def _log_to(path: Path) -> None:
    """The drill's own lines and its clients' (aiokafka's complaints during broker faults are expected and
    many) go to a file beside the stack's logs; the terminal gets the progress and the table."""
    from services.logs import TextFormatter

    handler = logging.FileHandler(path)
    handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def main(options: DrillOptions) -> int:
    """Run a drill, print its progress and table; 0 when nothing was lost, doubled or wrong, 1 otherwise."""
    drill = Drill(options, lambda line: print(line, flush=True))
    print(f"fault kinds:\n{legend()}", flush=True)
    verdict = asyncio.run(drill.run())
    print(render(verdict, drill.heading(verdict)), flush=True)
    return 0 if verdict.ok else 1
