"""What the broker knows about consumers: groups and members, committed offsets, log ends, oldest unread.

All reads, nothing committed. End offsets are read twice: through a `read_committed` consumer (the last stable
offset, LSO: what a transactional reader can reach, so lag is measured against it) and a `read_uncommitted`
one (the high watermark; HW - LSO is what open transactions hold back). The time lag needs the oldest record
a group has not read: `first_unread` seeks a `read_committed` consumer to each committed offset and takes the
first record it returns, which skips transaction markers and aborted records on its own; a partition whose
remaining offsets are only those has nothing unread (see `docs/lag.md`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

log = logging.getLogger("oee.lag")

_RECHECK_S = 60.0  # how long a group found to have nothing on our topics is left unexamined


@dataclass(frozen=True, slots=True)
class GroupInfo:
    group: str
    state: str  # Stable, Empty, PreparingRebalance, ... as the coordinator says
    members: int


@dataclass(frozen=True, slots=True)
class Unread:
    """The oldest record a reader at `start` has not read: its offset and timestamp (epoch ms)."""

    offset: int
    timestamp_ms: int


class KafkaProbe:
    def __init__(self, bootstrap: str, request_timeout_ms: int = 10_000) -> None:
        common = {
            "bootstrap_servers": bootstrap,
            "enable_auto_commit": False,
            "group_id": None,
            "request_timeout_ms": request_timeout_ms,
        }
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, client_id="oee-lag", request_timeout_ms=request_timeout_ms
        )
        # Small fetches: only the first record of each partition is wanted.
        self._stable = AIOKafkaConsumer(
            **common,
            client_id="oee-lag",
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=64 * 1024,
            fetch_max_bytes=4 * 1024 * 1024,
        )
        self._raw = AIOKafkaConsumer(**common, client_id="oee-lag-hw", isolation_level="read_uncommitted")
        self._coordinators: dict[str, int] = {}
        self._ignored: dict[str, float] = {}  # group -> when it was last found irrelevant
        self._unread: dict[
            tuple[TopicPartition, int], tuple[int, Unread | None]
        ] = {}  # (tp, start) -> (end, found)

    async def start(self) -> None:
        """Connect; on failure everything opened is closed again (build a new probe to retry)."""
        try:
            await self._admin.start()
            await self._stable.start()
            await self._raw.start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        for part in (self._stable, self._raw):
            with contextlib.suppress(Exception):
                await part.stop()
        with contextlib.suppress(Exception):
            await self._admin.close()

    # -- groups ---------------------------------------------------------------------------------------------
    async def list_groups(self) -> list[str]:
        return sorted({g[0] for g in await self._admin.list_consumer_groups()})

    async def groups_on(
        self, topics: frozenset[str] | None, always: str | None = None
    ) -> dict[str, dict[TopicPartition, int]]:
        """Every group with committed offsets on `topics` (all topics when None), with those offsets; plus
        every group named starting with `always` (our services' groups), committed offsets or not.

        A group found to have nothing on `topics` is not asked again for a minute: on a shared broker most
        groups belong to someone else, and each costs a round trip.
        """
        now = time.monotonic()
        names = [
            g
            for g in await self.list_groups()
            if now - self._ignored.get(g, -_RECHECK_S) >= _RECHECK_S or (always and g.startswith(always))
        ]
        fetched = await asyncio.gather(*(self.committed(g) for g in names), return_exceptions=True)
        out: dict[str, dict[TopicPartition, int]] = {}
        for name, offsets in zip(names, fetched, strict=True):
            if isinstance(offsets, BaseException):
                log.debug("offsets of group %s unavailable: %r", name, offsets)
                self._coordinators.pop(name, None)
                continue
            ours = {tp: o for tp, o in offsets.items() if topics is None or tp.topic in topics}
            if ours or (always and name.startswith(always)):
                out[name] = ours
                self._ignored.pop(name, None)
            else:
                self._ignored[name] = now
        return out

    async def committed(self, group: str) -> dict[TopicPartition, int]:
        coordinator = await self._coordinator(group)
        offsets = await self._admin.list_consumer_group_offsets(group, group_coordinator_id=coordinator)
        return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}

    async def describe(self, groups: Iterable[str]) -> dict[str, GroupInfo]:
        """State and member count of each group, asked of its coordinator.

        One group per DescribeGroups request: aiokafka 0.14 fails to decode a response describing two or
        more groups ("Buffer underrun decoding string") and drops the connection, so they go concurrently.
        """
        names = list(groups)
        answers = await asyncio.gather(*(self._describe_one(g) for g in names), return_exceptions=True)
        out: dict[str, GroupInfo] = {}
        for name, info in zip(names, answers, strict=True):
            if isinstance(info, GroupInfo):
                out[name] = info
            else:
                self._coordinators.pop(name, None)
                log.debug("group %s not described: %r", name, info)
        return out

    async def _describe_one(self, group: str) -> GroupInfo | None:
        node = await self._coordinator(group)
        for response in await self._admin.describe_consumer_groups([group], group_coordinator_id=node):
            for entry in response.groups:
                # (error_code, group, state, protocol_type, protocol, members, ...) in every version
                error, name, state, members = entry[0], entry[1], entry[2], entry[5]
                if not error and name == group:
                    return GroupInfo(name, state, len(members))
        return None

    async def _coordinator(self, group: str) -> int:
        node = self._coordinators.get(group)
        if node is None:
            node = await self._admin.find_coordinator(group)
            self._coordinators[group] = node
        return node

    # -- partitions and offsets -----------------------------------------------------------------------------
    async def partitions(self, topics: Iterable[str]) -> dict[str, list[int]]:
        """The partitions of each of `topics` that exists. Only existing topics are described: a metadata
        request naming a missing topic creates it on brokers with auto.create.topics.enable."""
        existing = set(await self._admin.list_topics())
        wanted = sorted(t for t in set(topics) if t in existing)
        out: dict[str, list[int]] = {}
        for topic in await self._admin.describe_topics(wanted) if wanted else []:
            if not topic["error_code"] and topic["partitions"]:
                out[topic["topic"]] = sorted(p["partition"] for p in topic["partitions"])
        return out

    async def ends(
        self, tps: Iterable[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """(last stable offsets, high watermarks) of `tps`."""
        wanted = list(tps)
        if not wanted:
            return {}, {}
        stable, high = await asyncio.gather(self._stable.end_offsets(wanted), self._raw.end_offsets(wanted))
        return stable, high

    async def starts(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        wanted = list(tps)
        return await self._stable.beginning_offsets(wanted) if wanted else {}

    async def first_unread(
        self,
        wants: Iterable[tuple[TopicPartition, int]],
        ends: Mapping[TopicPartition, int],
        timeout_s: float = 3.0,
    ) -> dict[tuple[TopicPartition, int], Unread | None]:
        """For each (partition, start): the oldest visible record at or after `start` and before the end, None
        when there is none (only transaction markers or aborted records left). Pairs that did not answer in
        time are left out.

        A found record stays valid while the start does not move (records below the LSO never change), so it
        is kept and reused; a "none" is reused only while the end stays the same too.
        """
        out: dict[tuple[TopicPartition, int], Unread | None] = {}
        rounds: list[dict[TopicPartition, int]] = []  # one consumer position per partition per round
        cache: dict[tuple[TopicPartition, int], tuple[int, Unread | None]] = {}
        for tp, start in sorted(set(wants), key=lambda w: (w[0].topic, w[0].partition, w[1])):
            end = ends.get(tp, 0)
            cached = self._unread.get((tp, start))
            if start >= end:
                out[(tp, start)] = None
            elif cached is not None and (cached[1] is not None or cached[0] == end):
                out[(tp, start)] = cached[1]
                cache[(tp, start)] = cached
            else:
                free = next((r for r in rounds if tp not in r), None)
                if free is None:
                    free = {}
                    rounds.append(free)
                free[tp] = start
        for todo in rounds:
            for tp, unread in (await self._fetch_first(todo, ends, timeout_s)).items():
                out[(tp, todo[tp])] = unread
                cache[(tp, todo[tp])] = (ends[tp], unread)
        self._unread = cache  # what was not asked for this time is forgotten
        return out

    async def _fetch_first(
        self, todo: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int], timeout_s: float
    ) -> dict[TopicPartition, Unread | None]:
        consumer = self._stable
        consumer.assign(list(todo))
        for tp, start in todo.items():
            consumer.seek(tp, start)  # before any await: the fetcher never reads from a default position
        found: dict[TopicPartition, Unread | None] = {}
        pending = set(todo)
        deadline = time.monotonic() + timeout_s
        try:
            while pending and time.monotonic() < deadline:
                batch = await consumer.getmany(*pending, timeout_ms=100)
                for tp, records in batch.items():
                    if tp in pending and records:
                        found[tp] = Unread(records[0].offset, records[0].timestamp)
                        pending.discard(tp)
                        consumer.pause(tp)
                for tp in list(pending):
                    # The fetcher moves past control batches and aborted records without returning anything.
                    if await consumer.position(tp) >= ends[tp]:
                        found[tp] = None
                        pending.discard(tp)
        finally:
            consumer.assign([])
        if pending:
            log.debug("no first unread record within %.1f s for %d partitions", timeout_s, len(pending))
        return found
