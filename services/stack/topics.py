"""Create the event contract's topics on the broker, idempotently, replicated as the cluster allows."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from events.topics import Replication, Topics, TopicSpec, replication_for, replication_of, topic_specs
from services.stack.procs import StackError


@dataclass(frozen=True)
class TopicReport:
    created: list[str]
    existing: list[str]
    warnings: list[str]
    brokers: int
    replication: Replication


def plan_replication(spec: TopicSpec, brokers: int) -> Replication:
    """The replication `spec` gets on a cluster of `brokers`: its own factor or the cluster's default.

    Refused (StackError, one line): a single copy on a cluster that could keep more, where losing one disk
    would lose acknowledged orders; and more copies than there are brokers, which Kafka would refuse anyway."""
    if spec.replication_factor is None:
        return replication_for(brokers)
    factor = spec.replication_factor
    if factor == 1 and brokers > 1:
        raise StackError(
            f"refusing to create topic {spec.name} with 1 replica on a {brokers}-broker cluster: one lost disk "
            f"would lose acknowledged orders; leave the replication factor unset (gives "
            f"{replication_for(brokers).factor}) or ask for more"
        )
    if factor > brokers:
        raise StackError(
            f"topic {spec.name} asks for {factor} replicas but the cluster has {brokers} broker(s) up"
        )
    return replication_of(factor)


async def ensure_topics(bootstrap: str, specs: list[TopicSpec]) -> TopicReport:
    """Create each topic that does not exist yet; an existing topic is left as it is (a warning when its
    partition count differs from the contract's, since repartitioning would move orders between partitions,
    or when it has fewer replicas than the cluster would give it now)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        plans = {s.name: plan_replication(s, brokers) for s in missing}
        created: list[str] = []
        if missing:
            new = [
                NewTopic(
                    s.name,
                    s.partitions,
                    plans[s.name].factor,
                    topic_configs={**s.config, "min.insync.replicas": str(plans[s.name].min_insync)},
                )
                for s in missing
            ]
            response = await admin.create_topics(new)
            for name, code, *_ in response.topic_errors:
                if code == 0:
                    created.append(name)
                elif code != TopicAlreadyExistsError.errno:
                    raise StackError(f"creating topic {name} failed with Kafka error code {code}")
        if created:
            await _wait_for_leaders(admin, created)
        warnings = []
        present = [s for s in specs if s.name in existing]
        if present:
            described = {d["topic"]: d for d in await admin.describe_topics([s.name for s in present])}
            wanted = replication_for(brokers).factor
            for spec in present:
                partitions = described.get(spec.name, {}).get("partitions") or []
                if partitions and len(partitions) != spec.partitions:
                    warnings.append(
                        f"topic {spec.name} has {len(partitions)} partitions, the contract asks {spec.partitions}"
                    )
                replicas = min((len(p["replicas"]) for p in partitions), default=wanted)
                if replicas < wanted:
                    warnings.append(
                        f"topic {spec.name} has {replicas} replica(s); this {brokers}-broker cluster would give "
                        f"it {wanted} (kafka-reassign-partitions can add them)"
                    )
        return TopicReport(
            created, sorted(existing & {s.name for s in specs}), warnings, brokers, replication_for(brokers)
        )
    finally:
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str], timeout: float = 30.0) -> None:
    # CreateTopics answers before every partition has a leader; a producer that writes at once would
    # get NotLeaderForPartition retries. Wait until the broker's metadata shows a leader everywhere.
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        described = await admin.describe_topics(names)
        if all(
            d["error_code"] == 0 and d["partitions"] and all(p["leader"] >= 0 for p in d["partitions"])
            for d in described
        ):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise StackError(f"topics {names} have no leader after {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def create_topics(
    bootstrap: str, prefix: str = "", partitions: int = 12, replication_factor: int | None = None
) -> TopicReport:
    specs = [
        TopicSpec(s.name, s.partitions, s.config, replication_factor)
        for s in topic_specs(Topics.with_prefix(prefix), partitions)
    ]
    return await ensure_topics(bootstrap, specs)


async def partition_leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """partition -> the node id leading it now (-1: none), from the cluster's metadata."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return {p["partition"]: p["leader"] for p in described["partitions"]}
    finally:
        await admin.close()
