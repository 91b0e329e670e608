"""In-process recovery on the real broker: a partition whose commit failed gets a new producer, restores
its committed state and carries on — no order lost, none doubled, no swap executed twice. The failures are
real: transactions the broker rejects (a record larger than the topic allows), and commits whose outcome
the router does not learn (aborted, or committed with the reply lost)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError
from prometheus_client import REGISTRY

from events.topics import Topics, topic_specs
from services.config import Settings
from services.router.options import RouterOptions
from services.router.txn import KafkaTxnProducer
from tests.e2e.harness import LogReader, assert_lifecycle
from tests.integration.router_harness import close_venues, intake, running, sim_venues
from tests.router_fakes import until
from tests.samples import order_request

pytestmark = pytest.mark.integration

OPTIONS = RouterOptions(quote_timeout_s=1.0, reconcile_every_s=0.1, reconcile_after_s=1.0)


def recoveries() -> float:
    return REGISTRY.get_sample_value("oee_router_recoveries_total", {"outcome": "recovered"}) or 0.0


class FailingCommits:
    """A real transactional producer whose planned commits fail: "lost" is aborted before the commit (the
    router only sees an error), "landed" commits and then reports an error (a lost reply)."""

    def __init__(self, inner: KafkaTxnProducer, plan: list[str | None]) -> None:
        self.inner = inner
        self.plan = plan

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def commit_transaction(self) -> None:
        mode = self.plan.pop(0) if self.plan else None
        if mode == "lost":
            raise KafkaConnectionError("injected: the commit did not reach the coordinator")
        await self.inner.commit_transaction()
        if mode == "landed":
            raise KafkaConnectionError("injected: committed, but the reply was lost")


def failing(bootstrap: str, plans: dict[int, list[str | None]]) -> Any:
    """A producer factory: partition p's first producer follows plans[p]; later ones (after a recovery)
    commit normally."""

    def make(transactional_id: str) -> FailingCommits:
        p = int(transactional_id.rsplit(".", 1)[1])
        plan, plans[p] = plans.get(p, []), []
        return FailingCommits(KafkaTxnProducer(bootstrap, transactional_id), plan)

    return make


async def check(log: LogReader, orders: Sequence[Any], venues: dict[str, Any]) -> None:
    await log.wait_terminal([o.order_id for o in orders], 60)
    await log.settle(1.0)
    for order in orders:
        events = log.by_order[order.order_id]
        assert_lifecycle(events)
        holders = [v for v, venue in venues.items() if venue.inner.ledger_count(order.order_id)]
        if events[-1].type == "OrderConfirmed":
            assert holders == [events[-1].data.venue]
        assert all(venues[v].inner.ledger_count(order.order_id) == 1 for v in holders)


async def test_commits_that_failed_or_whose_reply_was_lost_are_recovered_in_process(
    infra: Settings, topics: Topics
) -> None:
    venues = sim_venues(latency=(0.2, 0.6))
    plans: dict[int, list[str | None]] = {0: ["lost"], 1: ["landed"], 2: [None, "lost"]}
    orders = [order_request("sell" if i % 2 else "buy", amount=1 + i % 4) for i in range(30)]
    before = recoveries()
    try:
        async with (
            running(
                infra, topics, venues, OPTIONS, producer_factory=failing(infra.bootstrap_servers, plans)
            ) as core,
            LogReader(infra.bootstrap_servers, topics.events) as log,
        ):
            for batch in (orders[:10], orders[10:20], orders[20:]):
                await core.handle(await intake(infra, topics, [(i % 3, o) for i, o in enumerate(batch)]))
            await check(log, orders, venues)
            assert not core.crashed.done()
        assert recoveries() >= before + 3
    finally:
        await close_venues(venues)


async def test_a_transaction_the_broker_rejects_is_recovered_once_the_cause_is_gone(
    infra: Settings, topics: Topics
) -> None:
    venues = sim_venues()
    first, second = order_request(), order_request()
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.bootstrap_servers)
    await admin.start()

    configs = next(spec.config for spec in topic_specs(topics) if spec.name == topics.events)

    async def max_message_bytes(value: str) -> None:
        # AlterConfigs sets the topic's whole configuration: the contract's, with this one value changed.
        resource = ConfigResource(
            ConfigResourceType.TOPIC, topics.events, {**configs, "max.message.bytes": value}
        )
        await admin.alter_configs([resource])

    before = recoveries()
    try:
        async with (
            running(infra, topics, venues, dataclasses.replace(OPTIONS, recovery_limit=30)) as core,
            LogReader(infra.bootstrap_servers, topics.events) as log,
        ):
            await core.handle(await intake(infra, topics, [(0, first)]))
            await log.wait_terminal([first.order_id], 30)
            # The broker now refuses any batch of the event log: the next transaction fails on its sends.
            await max_message_bytes("100")
            records = await intake(infra, topics, [(0, second)])
            handling = asyncio.create_task(core.handle(records))
            await until(lambda: recoveries() > before or handling.done(), 30, "a failed commit, recovered")
            await log.settle(0.3)
            assert second.order_id not in log.by_order and not handling.done()
            await max_message_bytes("1048588")
            await asyncio.wait_for(handling, 60)
            await check(log, [first, second], venues)
            assert not core.crashed.done()
    finally:
        await admin.close()
        await close_venues(venues)
