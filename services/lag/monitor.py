"""The lag monitor: samples the broker and Postgres every few seconds and keeps the recent reports.

One sample reads, in this order: the consumer groups on this deployment's topics and their committed offsets
and members (`KafkaProbe`), the projections' stored positions (`postgres`), the log's stable and high ends,
and the oldest unread record of every lagging partition; then it assesses each reader against the sliding
window (`assess`, `rules`) and adds the projection's resting orders (`postgres.resting_orders`), the order
view (`OrderTracker`, fed continuously by `LogFollower`) and the stage lags. The last reports are kept so that
every view can name the sample it shows (`seq`) and another view can fetch the very same one
(`GET /api/lag?seq=N`).

A part that fails (Postgres down, broker unreachable) is reported in `errors` and the rest still is.

The `log_to_gateway` stage comes from the gateway's delivery histogram, handed in by the composition root
that runs a gateway in the same process (`deliveries`; the API does); without one the stage is `pending`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Iterable

import asyncpg
from aiokafka.structs import TopicPartition
from prometheus_client import Histogram

from events.topics import Topics
from services.config import Settings
from services.lag import postgres
from services.lag.assess import Key, Offsets, Reading, assess, complete, projection_readings, start_of
from services.lag.config import LagOptions
from services.lag.follow import LogFollower
from services.lag.kafka import KafkaProbe
from services.lag.model import GroupLag, LagReport, OrdersView, RestingOrders, StageLag, Stat, TopicLag
from services.lag.orders import IN_FLIGHT_STATUSES, TRACKER_STAGES, OrderTracker
from services.lag.stages import HistogramWindow, snapshot
from services.lag.window import Rate, Recent, SampleWindow

log = logging.getLogger("oee.lag")


class LagMonitor:
    def __init__(
        self,
        settings: Settings,
        options: LagOptions,
        pool: asyncpg.Pool | None = None,
        projection_schema: str = "public",
        history_s: float = 60.0,
        deliveries: Histogram | None = None,
    ) -> None:
        self.options = options
        self.deliveries = deliveries  # the in-process gateway's oee_gateway_delivery_lag_seconds
        self.pool = pool
        self.schema = projection_schema
        self.topics = Topics.with_prefix(settings.topic_prefix)
        deployment = options.scope == "deployment"
        ours = (self.topics.requests, self.topics.events, self.topics.dead_letters, self.topics.router_state)
        self.scope_topics: frozenset[str] | None = frozenset(ours) if deployment else None
        self.own_groups: str | None = f"{settings.topic_prefix}oee-" if deployment else None
        self.bootstrap = settings.bootstrap_servers
        self._probe: KafkaProbe | None = None
        self._connecting = asyncio.Lock()
        self.tracker = OrderTracker(options.stats_window_s)
        self.follower = LogFollower(
            settings.bootstrap_servers, self.topics.events, self.tracker, options.warmup_events
        )
        self.window: SampleWindow[Key] = SampleWindow(options.window_s)
        # At least the last minute of reports (and 30), so a view can fetch the very sample another showed.
        kept = max(30, math.ceil(history_s / options.interval_s)) if options.interval_s > 0 else 30
        self.history: deque[LagReport] = deque(maxlen=kept)
        self._rates: dict[str, Rate] = {}
        self._projector_lag = Recent(options.stats_window_s, 5000)
        self._gateway = HistogramWindow(options.stats_window_s)
        self._seeded: set[int] = set()
        self._seq = 0
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def start(self, background: bool = True) -> None:
        """Follow the log and, with `background`, sample every `interval_s` until `stop`. Returns at once:
        connecting happens in those tasks (and in `sample`), so a broker that is down delays nothing."""
        self._tasks.append(asyncio.create_task(self._follow(), name="lag-follow"))
        if background:
            self._tasks.append(asyncio.create_task(self._sample_forever(), name="lag-sample"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
        await self.follower.stop()
        if self._probe is not None:
            await self._probe.close()
            self._probe = None

    async def probe(self) -> KafkaProbe:
        """The connected probe (connecting now if needed; raises when the broker does not answer)."""
        async with self._connecting:  # the follower and the sampler both ask: connect once
            if self._probe is None:
                probe = KafkaProbe(self.bootstrap)
                await probe.start()
                self._probe = probe
            return self._probe

    @property
    def latest(self) -> LagReport | None:
        return self.history[-1] if self.history else None

    def report(self, seq: int) -> LagReport | None:
        return next((r for r in self.history if r.seq == seq), None)

    async def _follow(self) -> None:
        while True:
            try:
                topic = self.topics.events
                partitions = (await (await self.probe()).partitions([topic])).get(topic)
                if partitions:  # else the topic does not exist yet: look again later
                    await self.follower.start(partitions)
                    await self.follower.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("order view: reading the event log failed, retrying: %r", exc)
            await asyncio.sleep(max(self.options.interval_s, 1.0))

    async def _sample_forever(self) -> None:
        while True:
            started = time.monotonic()
            try:
                # A broker that stops answering mid-sample must not freeze the reports for good.
                async with asyncio.timeout(max(30.0, 5 * self.options.interval_s)):
                    await self.sample()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lag sample failed")
            await asyncio.sleep(max(0.05, self.options.interval_s - (time.monotonic() - started)))

    # -- one sample -----------------------------------------------------------------------------------------
    async def sample(self) -> LagReport:
        """Take one sample, keep it in the history and return it."""
        began, now = time.perf_counter(), time.time()
        errors: list[str] = []
        readings: list[Reading] = []
        try:
            probe = await self.probe()
            readings += await self._kafka_readings(probe)
        except Exception as exc:
            errors.append(f"consumer groups: {exc!r}")
        positions: list[postgres.StoredPosition] = []
        if self.pool is not None:
            try:
                scope = sorted(self.scope_topics) if self.scope_topics is not None else None
                positions = await postgres.stored_positions(self.pool, self.schema, scope)
            except Exception as exc:
                errors.append(f"projector positions: {exc!r}")
        groups: list[GroupLag] = []
        topics: list[TopicLag] = []
        try:
            probe = await self.probe()
            parts = await probe.partitions(
                set(self.scope_topics or ()) | {tp.topic for r in readings for tp in r.committed}
                | {p.topic for p in positions}
            )  # fmt: skip
            alive_s = self.options.projector_alive_s
            readings = [complete(r, parts) for r in readings] + projection_readings(positions, parts, alive_s)
            offsets = await self._offsets(probe, readings, parts)
            thresholds = self.options.thresholds
            groups = [assess(r, offsets, now, self.window, thresholds) for r in readings]
            topics = self._topics(parts, offsets, now)
            await self._keep_following(offsets)
        except Exception as exc:
            errors.append(f"log offsets: {exc!r}")
        self.window.prune(now)
        if self.pool is not None and positions:
            try:
                await self._seed(positions)
            except Exception as exc:
                errors.append(f"orders table: {exc!r}")
        resting: RestingOrders | None = None
        if self.pool is not None:
            try:
                resting = await postgres.resting_orders(self.pool, self.schema)
            except Exception as exc:
                errors.append(f"resting orders: {exc!r}")
        orders = self.tracker.view(now, self.options.stuck_s) if self.follower.start_offsets else None
        self._seq += 1
        report = LagReport(
            seq=self._seq,
            sampled_at=now,
            took_s=time.perf_counter() - began,
            interval_s=self.options.interval_s,
            window_s=self.options.window_s,
            scope=self.options.scope,
            groups=tuple(sorted(groups, key=lambda g: (g.kind != "kafka", g.group))),
            topics=tuple(topics),
            stages=self._stages(groups, now),
            orders=orders,
            errors=tuple(errors),
            resting=resting,
        )
        self.history.append(report)
        return report

    async def _kafka_readings(self, probe: KafkaProbe) -> list[Reading]:
        committed = await probe.groups_on(self.scope_topics, self.own_groups)
        infos = await probe.describe(committed) if committed else {}
        out = []
        for group, offsets in sorted(committed.items()):
            info = infos.get(group)
            members = info.members if info else None
            out.append(Reading(group, "kafka", members, info.state if info else "unknown", dict(offsets)))
        return out

    async def _offsets(
        self, probe: KafkaProbe, readings: list[Reading], parts: dict[str, list[int]]
    ) -> Offsets:
        tps = [TopicPartition(t, p) for t, ps in parts.items() for p in ps]
        stable, high = await probe.ends(tps)
        missing = {tp for r in readings for tp, c in r.committed.items() if c is None}
        starts = await probe.starts(missing)
        partial = Offsets(stable, high, starts, {})
        wants = {
            (tp, start_of(r, tp, partial))
            for r in readings
            for tp in r.committed
            if tp in stable and start_of(r, tp, partial) < stable[tp]
        }
        unread = await probe.first_unread(wants, stable)
        return Offsets(stable, high, starts, unread)

    def _topics(self, parts: dict[str, list[int]], offsets: Offsets, now: float) -> list[TopicLag]:
        out = []
        for topic in sorted(parts):
            tps = [TopicPartition(topic, p) for p in parts[topic]]
            end = sum(offsets.stable.get(tp, 0) for tp in tps)
            unstable = sum(max(0, offsets.high.get(tp, 0) - offsets.stable.get(tp, 0)) for tp in tps)
            rate = self._rates.setdefault(topic, Rate())
            rate.add(now, end)
            out.append(TopicLag(topic, len(tps), end, unstable, rate.per_second()))
        return out

    async def _keep_following(self, offsets: Offsets) -> None:
        if self.follower.start_offsets:
            ends = {tp.partition: o for tp, o in offsets.stable.items() if tp.topic == self.topics.events}
            await self.follower.keep_up(ends)

    async def _seed(self, positions: list[postgres.StoredPosition]) -> None:
        """Tell the order view of old orders still in flight that the log tail it read did not show: rows of
        partitions the projection has applied at least up to where the view started reading, so the row
        holds every event before that point and the view every event after it."""
        starts = self.follower.start_offsets
        ready = {
            p.partition
            for p in positions
            if p.topic == self.topics.events
            and p.partition in starts
            and p.next_offset >= starts[p.partition]
        } - self._seeded
        if not ready:
            return
        oldest = min(self.options.stuck_s.values())
        rows = await postgres.still_orders(self.pool, self.schema, IN_FLIGHT_STATUSES, oldest)  # type: ignore[arg-type]
        seeded = sum(
            self.tracker.seed(r.order_id, r.status, r.updated_at, r.partition, r.seq)
            for r in rows
            if r.partition in ready
        )
        self._seeded |= ready
        if seeded:
            log.info("order view: %d older orders in flight taken from the projection", seeded)

    # -- stages ---------------------------------------------------------------------------------------------
    def _stages(self, groups: Iterable[GroupLag], now: float) -> tuple[StageLag, ...]:
        stages = [StageLag(name, self.tracker.stage(name, now), "log") for name in TRACKER_STAGES]
        projected = [
            p.time_lag_s
            for g in groups
            if g.kind == "projection"
            for p in g.partitions
            if p.topic == self.topics.events
        ]
        if projected:
            current = max(projected)
            self._projector_lag.add(now, current)
            stat = self._projector_lag.stat(now)
            stages.append(StageLag("log_to_projector", stat, "kafka+postgres", current_s=current))
        else:
            why = f"no projector positions for {self.topics.events} in {self.schema}.projector_positions"
            stages.append(StageLag("log_to_projector", Stat(), "kafka+postgres", pending=why))
        stages.append(self._gateway_stage(now))
        return tuple(stages)

    def _gateway_stage(self, now: float) -> StageLag:
        if self.deliveries is None:
            why = "no gateway in this process (the standalone gateway's /metrics has its deliveries)"
            return StageLag("log_to_gateway", Stat(), "gateway", pending=why)
        self._gateway.add(snapshot(self.deliveries, now))
        if self._gateway.ever_observed:
            return StageLag("log_to_gateway", self._gateway.stat(), "gateway")
        why = "no live frame delivered to a WebSocket client yet (oee_gateway_delivery_lag_seconds)"
        return StageLag("log_to_gateway", Stat(), "gateway", pending=why)


__all__ = ["LagMonitor", "OrdersView"]
