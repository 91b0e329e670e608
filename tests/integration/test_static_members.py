"""Static group members (decision 0029, `services/static_coordinator.py`) against the real broker, with a
session long enough (30 s) that waiting it out cannot pass for the behaviour under test: a static member
stopped gracefully leaves, and the other member gets its partitions at once; a second live consumer with the
same instance id fences the first on its next heartbeat, which then reports it instead of taking the id back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from events.topics import Topics
from services import static_coordinator
from services.config import Settings
from services.static_membership import is_fenced
from tests.waiting import until

pytestmark = pytest.mark.integration

SESSION_MS = 30_000
HEARTBEAT_MS = 300


@pytest.fixture
async def members(infra: Settings, topics: Topics) -> AsyncIterator[Callable[[str, str], AIOKafkaConsumer]]:
    """Make static members of one group on the test's 3-partition events topic; all stopped afterwards."""
    static_coordinator.install()
    made: list[AIOKafkaConsumer] = []

    def make(group: str, instance: str) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            topics.events,
            bootstrap_servers=infra.bootstrap_servers,
            group_id=group,
            group_instance_id=instance,
            enable_auto_commit=False,
            session_timeout_ms=SESSION_MS,
            heartbeat_interval_ms=HEARTBEAT_MS,
        )
        made.append(consumer)
        return consumer

    yield make
    for consumer in made:
        await consumer.stop()


def polling(consumer: AIOKafkaConsumer, errors: list[BaseException]) -> asyncio.Task[None]:
    """Poll as an application does (the group's errors surface through the poll), keeping what it raises."""

    async def poll() -> None:
        while True:
            try:
                await consumer.getmany(timeout_ms=100)
            except Exception as exc:
                errors.append(exc)
                return

    return asyncio.create_task(poll())


def all_partitions(topic: str) -> set[TopicPartition]:
    return {TopicPartition(topic, p) for p in range(3)}


async def test_a_static_member_stopped_gracefully_hands_its_partitions_over_at_once(
    members: Callable[[str, str], AIOKafkaConsumer], topics: Topics
) -> None:
    group = f"g-{uuid.uuid4().hex[:8]}"
    first, second = members(group, "first"), members(group, "second")
    errors: list[BaseException] = []
    await first.start()
    await second.start()
    tasks = [polling(first, errors), polling(second, errors)]
    try:
        await until(
            lambda: (
                first.assignment()
                and second.assignment()
                and len(first.assignment() | second.assignment()) == 3
            ),
            60,
            "both members to own partitions",
        )
        stopped_at = time.monotonic()
        tasks[0].cancel()
        await first.stop()
        await until(
            lambda: second.assignment() == all_partitions(topics.events), 60, "the other member to own all"
        )
        elapsed = time.monotonic() - stopped_at
        print(f"\ngraceful stop of a static member to the other owning every partition: {elapsed:.2f} s")
        # Without the LeaveGroup the first member stays in the group until its 30 s session ends.
        assert elapsed < SESSION_MS / 1000 / 3, (
            f"{elapsed:.1f} s: waited for the session instead of a LeaveGroup"
        )
        assert not errors, errors
    finally:
        for task in tasks:
            task.cancel()


async def test_a_second_live_member_with_the_same_id_fences_the_first_which_reports_it(
    members: Callable[[str, str], AIOKafkaConsumer], topics: Topics
) -> None:
    group = f"g-{uuid.uuid4().hex[:8]}"
    fenced_calls: list[tuple[str, str]] = []
    static_coordinator.on_fenced(lambda g, i: fenced_calls.append((g, i)) if g == group else None)
    older, newer = members(group, "same"), members(group, "same")
    older_errors: list[BaseException] = []
    newer_errors: list[BaseException] = []
    await older.start()
    older_task = polling(older, older_errors)
    await until(
        lambda: older.assignment() == all_partitions(topics.events), 60, "the older member to own all"
    )
    await newer.start()
    newer_task = polling(newer, newer_errors)
    try:
        # The broker swaps the newer in for the older; the older's next heartbeat (v3, with the id) is answered
        # FENCED_INSTANCE_ID, and its poll raises it.
        await until(lambda: older_errors, 30, "the older member's poll to raise")
        assert is_fenced(older_errors[0]), older_errors
        assert fenced_calls == [(group, "same")]
        await until(lambda: newer.assignment() == all_partitions(topics.events), 30, "the newer to own all")
        # No ping-pong: the newer keeps the id over many heartbeats, and the fenced one's stop does not remove
        # it (its LeaveGroup would name a member id the group no longer has, so it sends none).
        await older.stop()
        deadline = time.monotonic() + 20 * HEARTBEAT_MS / 1000
        await until(lambda: time.monotonic() > deadline or newer_errors, 30, "a few heartbeats")
        assert not newer_errors, newer_errors
        assert newer.assignment() == all_partitions(topics.events)
        assert fenced_calls == [(group, "same")]
    finally:
        older_task.cancel()
        newer_task.cancel()
