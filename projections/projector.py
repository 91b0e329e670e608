"""`oee projector`: builds the Postgres order tables from the event log, each batch exactly once.

A plain aiokafka consumer of the event log (`read_committed`, so aborted router transactions never show).
Its consumer group only spreads partitions over projector processes and makes lag visible to Kafka tools:
the position a partition resumes from is the one stored in Postgres with the rows (`projector_positions`),
read on every assignment. Kafka offsets are committed too, after the database commit, for the lag tools only.

Per `getmany` batch: decode, load the touched orders' rows in one query, fold through the shared state machine,
write events, rows, dead letters and the new positions in one transaction (see `projections.batch`), NOTIFY
waiting readers. A batch is applied only for partitions the consumer read contiguously from the stored
position; anything else is dropped and re-read from there. Postgres going away (a restart, a failover) makes
the batch wait and retry on a new connection; nothing is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from events.topics import Topics
from projections import migrations
from projections.batch import BatchOutcome, apply_batch
from projections.db import Reconnecting
from projections.fold import LogRecord
from projections.settings import ProjectorOptions
from projections.store import ProjectionStore
from services import static_coordinator
from services.config import Settings
from services.metrics import projector as projector_metrics
from services.static_membership import InstanceFenced, is_fenced

log = logging.getLogger("oee.projector")

_STATS_EVERY_S = 10.0
_KAFKA_COMMIT_EVERY_S = 1.0
# The Kafka offsets are for lag tools only: a forced commit (revocation, stop) waits this long at most, and an
# ordinary one is never waited for. A paused broker holding the group's coordinator once held the projection
# loop for the whole pause, as long as the commit's request timeout.
_KAFKA_COMMIT_WAIT_S = 5.0


def group_id(settings: Settings) -> str:
    return f"{settings.topic_prefix}oee-projector"


@dataclass(slots=True)
class Stats:
    applied: int = 0
    duplicates: int = 0
    dead: int = 0
    batches: int = 0
    reread: int = 0

    def add(self, outcome: BatchOutcome) -> None:
        self.applied += outcome.applied
        self.duplicates += outcome.duplicates
        self.dead += outcome.dead
        self.batches += 1
        self.reread += len(outcome.moved)


class Projector:
    """The projector of one deployment (topic prefix) into one schema."""

    def __init__(self, settings: Settings, options: ProjectorOptions | None = None) -> None:
        self.options = options or ProjectorOptions.from_env()
        self.settings = settings
        self.topic = Topics.with_prefix(settings.topic_prefix).events
        self.store = ProjectionStore(self.options.schema, self.topic)
        self.db = Reconnecting(settings.database_url, application_name=f"oee-projector:{self.options.schema}")
        self.stats = Stats()
        # partition -> the position stored in Postgres as far as this process knows (None: no row yet).
        # Only partitions in here are ours; the rebalance callbacks fill and empty it.
        self.expected: dict[int, int | None] = {}
        # partition -> where the consumer must be reading from: the stored position, or the log's beginning.
        self.cursor: dict[int, int] = {}
        self._lock = asyncio.Lock()  # one batch at a time; a rebalance waits for the batch in flight
        self._consumer: AIOKafkaConsumer | None = None
        self._fatal: BaseException | None = None  # aiokafka only logs a failing rebalance callback
        self._last_write = 0.0
        self._last_kafka_commit = 0.0
        self._kafka_commit: asyncio.Task[None] | None = None  # the lag tools' offset commit in flight
        self._last_stats = time.monotonic()
        self._stats_mark = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Project until `stop` is set; applies the migrations to the schema first."""
        applied = await self.db.run(lambda conn: migrations.apply(conn, self.options.schema))
        if applied:
            log.info("schema %s: applied %s", self.options.schema, ", ".join(applied))
        if self.options.instance_id is not None:
            static_coordinator.install()  # leave the group on stop, be fenced on a heartbeat (decision 0029)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_servers,
            group_id=group_id(self.settings),
            # Static membership (`PROJECTOR_INSTANCE_ID`, set by `up`): a restarted projector takes its
            # partitions back at once instead of after the dead member's session (decision 0029).
            group_instance_id=self.options.instance_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        consumer.subscribe([self.topic], listener=_Rebalance(self))
        self._consumer = consumer
        await _start(consumer, stop)
        log.info(
            "projecting %s into schema %s (group %s)",
            self.topic,
            self.options.schema,
            group_id(self.settings),
        )
        try:
            while not stop.is_set():
                before = await self._positions()
                batch = await self._fetch(consumer)
                if self._fatal is not None:
                    raise RuntimeError("a rebalance callback failed") from self._fatal
                async with self._lock:  # the rebalance callbacks use the same connection
                    await self._step(batch, before)
                    await self._housekeeping()
        finally:
            with contextlib.suppress(Exception):
                await self._commit_kafka(force=True)
            if self._kafka_commit is not None:
                self._kafka_commit.cancel()
                await asyncio.gather(self._kafka_commit, return_exceptions=True)
            await consumer.stop()
            await self.db.close()
            log.info("stopped after %d batches (%d events applied)", self.stats.batches, self.stats.applied)

    async def _fetch(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, list]:  # type: ignore[type-arg]
        try:
            return await consumer.getmany(
                timeout_ms=int(self.options.poll_s * 1000), max_records=self.options.batch_max
            )
        except KafkaError as exc:
            if self.options.instance_id is not None and is_fenced(exc):
                # Polling on would rejoin with the same id and fence the other process in turn.
                raise InstanceFenced(
                    "projector", group_id(self.settings), self.options.instance_id, "PROJECTOR_INSTANCE_ID"
                ) from exc
            raise

    async def _positions(self) -> dict[int, int]:
        """The consumer's position of every partition this process owns (skipping any just revoked)."""
        assert self._consumer is not None
        out: dict[int, int] = {}
        for p in list(self.cursor):
            with contextlib.suppress(IllegalStateError):
                out[p] = await self._consumer.position(TopicPartition(self.topic, p))
        return out

    async def _step(self, batch: dict[TopicPartition, list], before: dict[int, int]) -> None:  # type: ignore[type-arg]
        assert self._consumer is not None
        after = await self._positions()
        records: list[LogRecord] = []
        positions: dict[int, int] = {}
        for p, cursor in list(self.cursor.items()):
            start, end = before.get(p), after.get(p)
            if end is None:
                continue
            if start != cursor or end < cursor:
                # Not read contiguously from where the projection stands (a seek or a rebalance came in
                # between, or the consumer reset itself): drop what was read, read again from there.
                self._seek(p, cursor)
                continue
            if end == cursor and self.expected.get(p) is not None:
                continue  # nothing new (an empty partition still gets its row once)
            positions[p] = end
            records.extend(
                LogRecord(p, m.offset, m.value) for m in batch.get(TopicPartition(self.topic, p), ())
            )
        if not positions:
            return
        ends = self._ends(positions)
        hook = self._failpoint("before_commit")
        started = time.monotonic()
        outcome = await self.db.run(
            lambda conn: apply_batch(conn, self.store, records, self.expected, positions, ends, hook)
        )
        projector_metrics.observe_batch(
            "orders", time.monotonic() - started, (), duplicates=outcome.duplicates, dead_letters=outcome.dead
        )
        projector_metrics.APPLIED.labels("orders").inc(outcome.applied)  # occurred_at is not kept per event
        if (after_hook := self._failpoint("after_commit")) is not None:
            after_hook()
        for p, n in outcome.written.items():
            if p in self.cursor:
                self.expected[p] = self.cursor[p] = n
        for p, stored_at in outcome.moved.items():
            await self._reread(p, stored_at)
        self.stats.add(outcome)
        self._last_write = time.monotonic()

    async def _reread(self, partition: int, stored: int | None) -> None:
        """Someone else moved this partition's stored position: continue from what is stored."""
        log.info("partition %d: stored position is %s, not %s; reading from there", partition, stored,
                 self.expected.get(partition))  # fmt: skip
        if partition in self.cursor:
            await self._place(partition, stored)

    async def _place(self, partition: int, stored: int | None) -> None:
        """Make `stored` the expected position and seek there (the log's beginning when there is none)."""
        assert self._consumer is not None
        tp = TopicPartition(self.topic, partition)
        # An explicit offset rather than seek_to_beginning, whose reset lands asynchronously and could move
        # the consumer back after records were already read from elsewhere.
        cursor = stored if stored is not None else (await self._consumer.beginning_offsets([tp]))[tp]
        self.expected[partition] = stored
        self.cursor[partition] = cursor
        self._seek(partition, cursor)

    def _seek(self, partition: int, offset: int) -> None:
        assert self._consumer is not None
        with contextlib.suppress(IllegalStateError):
            self._consumer.seek(TopicPartition(self.topic, partition), offset)

    def _ends(self, partitions: dict[int, int] | list[int]) -> dict[int, int | None]:
        """What read_committed can see of each partition (the last stable offset), as of the last fetch."""
        assert self._consumer is not None
        ends: dict[int, int | None] = {}
        for p in partitions:
            tp = TopicPartition(self.topic, p)
            with contextlib.suppress(IllegalStateError):
                lso = self._consumer.last_stable_offset(tp)
                ends[p] = lso if lso is not None else self._consumer.highwater(tp)
        return ends

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        if self.expected and now - self._last_write >= self.options.heartbeat_s:
            ends = self._ends(list(self.expected))
            await self.db.run(lambda conn: self.store.heartbeat(conn, ends))
            self._last_write = now
        await self._commit_kafka()
        if now - self._last_stats >= _STATS_EVERY_S:
            lag = sum(
                max(0, (e or 0) - (self.expected.get(p) or 0))
                for p, e in self._ends(list(self.expected)).items()
            )
            rate = (self.stats.applied - self._stats_mark) / (now - self._last_stats)
            log.info(
                "applied %d events (%.0f/s), %d duplicates skipped, %d dead letters, lag %d, %d reconnects",
                self.stats.applied, rate, self.stats.duplicates, self.stats.dead, lag, self.db.reconnects,
            )  # fmt: skip
            self._last_stats, self._stats_mark = now, self.stats.applied

    async def _commit_kafka(self, force: bool = False, partitions: list[int] | None = None) -> None:
        """Mirror the stored positions into the group's Kafka offsets, for lag tools only (never read back).
        In the background: the projection never waits on the group coordinator (a forced commit, at a
        revocation or a stop, waits `_KAFKA_COMMIT_WAIT_S` at most), and a commit still in flight is not
        followed by another."""
        now = time.monotonic()
        if self._consumer is None or (not force and now - self._last_kafka_commit < _KAFKA_COMMIT_EVERY_S):
            return
        if not force and self._kafka_commit is not None and not self._kafka_commit.done():
            return
        self._last_kafka_commit = now
        wanted = self.expected if partitions is None else {p: self.expected.get(p) for p in partitions}
        offsets = {TopicPartition(self.topic, p): n for p, n in wanted.items() if n is not None}
        if not offsets:
            return
        task = asyncio.create_task(self._commit_offsets(self._consumer, offsets))
        self._kafka_commit = task
        if force:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), _KAFKA_COMMIT_WAIT_S)

    @staticmethod
    async def _commit_offsets(consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        try:
            await consumer.commit(offsets)
        except (KafkaError, IllegalStateError) as exc:
            log.debug("kafka offset commit skipped: %r", exc)

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        """Seek each new partition to the position stored in Postgres (the beginning when there is none)."""
        async with self._lock:
            stored = await self.db.run(self.store.positions)
            ours = sorted(tp.partition for tp in partitions if tp.topic == self.topic)
            for p in ours:
                await self._place(p, stored.get(p))
            log.info("partition assigned: %s (stored positions %s)", ours, {p: stored.get(p) for p in ours})

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """Let the batch in flight finish (the lock), mirror its offsets to Kafka, forget the partitions."""
        async with self._lock:
            gone = [tp.partition for tp in partitions if tp.topic == self.topic]
            await self._commit_kafka(force=True, partitions=gone)
            for p in gone:
                self.expected.pop(p, None)
                self.cursor.pop(p, None)
            if gone:
                log.info("partitions revoked: %s", sorted(gone))

    def _failpoint(self, where: str) -> Callable[[], None] | None:
        """Tests only (PROJECTOR_FAILPOINT): SIGKILL this process just before or after batch N commits."""
        fp = self.options.failpoint
        if fp is None or fp[0] != where or self.stats.batches + 1 != fp[1]:
            return None

        def kill() -> None:
            log.warning("failpoint %s:%d: SIGKILL", *fp)
            os.kill(os.getpid(), signal.SIGKILL)

        return kill


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, projector: Projector) -> None:
        self._projector = projector

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        try:
            await self._projector.revoked(revoked)
        except Exception as exc:
            self._projector._fatal = exc
            raise

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        try:
            await self._projector.assigned(assigned)
        except Exception as exc:
            # Without its stored positions the projector must not read on: stop it (and be restarted).
            self._projector._fatal = exc
            raise


async def _start(consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
    """Start the consumer, waiting for the broker with backoff (a projector may start before it)."""
    delay = 0.5
    while True:
        try:
            await consumer.start()
            return
        except KafkaError as exc:
            if stop.is_set():
                raise
            log.warning("broker unavailable (%r); retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def serve(settings: Settings, options: ProjectorOptions | None = None) -> None:
    """Run the projector until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await Projector(settings, options).run(stop)


def run(settings: Settings, options: ProjectorOptions | None = None) -> None:
    """`oee projector`: serve in the foreground on uvloop."""
    import uvloop

    from services import logs

    logs.setup(settings.log_level, settings.log_format, "oee.projector")
    from services import metrics

    metrics.serve(metrics.port_from_env(None, "PROJECTOR_METRICS_PORT"), settings.host, "projector metrics")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(settings, options))
