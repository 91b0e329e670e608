"""Create the event contract's topics on the broker, idempotently."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from events.topics import Topics, TopicSpec, topic_specs


@dataclass(frozen=True)
class TopicReport:
    created: list[str]
    existing: list[str]
    warnings: list[str]


async def ensure_topics(bootstrap: str, specs: list[TopicSpec]) -> TopicReport:
    """Create each topic that does not exist yet; an existing topic is left as it is (a warning when its
    partition count differs from the contract's, since repartitioning would move orders between partitions)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        created: list[str] = []
        if missing:
            new = [NewTopic(s.name, s.partitions, 1, topic_configs=dict(s.config)) for s in missing]
            response = await admin.create_topics(new)
            for name, code, *_ in response.topic_errors:
                if code == 0:
                    created.append(name)
                elif code != TopicAlreadyExistsError.errno:
                    raise RuntimeError(f"creating topic {name} failed with Kafka error code {code}")
        if created:
            await _wait_for_leaders(admin, created)
        warnings = []
        present = [s for s in specs if s.name in existing]
        if present:
            described = await admin.describe_topics([s.name for s in present])
            counts = {d["topic"]: len(d["partitions"]) for d in described}
            for spec in present:
                if counts.get(spec.name, spec.partitions) != spec.partitions:
                    warnings.append(
                        f"topic {spec.name} has {counts[spec.name]} partitions, the contract asks {spec.partitions}"
                    )
        return TopicReport(created, sorted(existing & {s.name for s in specs}), warnings)
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
            raise RuntimeError(f"topics {names} have no leader after {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def create_topics(bootstrap: str, prefix: str = "", partitions: int = 12) -> TopicReport:
    return await ensure_topics(bootstrap, topic_specs(Topics.with_prefix(prefix), partitions))
