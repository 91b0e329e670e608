"""The projector's Kafka offsets are for lag tools only: a group coordinator that does not answer (a paused
broker holds it) never holds the projection. The chaos drill saw the projection stop for a whole 30 s broker
pause while the loop awaited that commit."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from projections import projector as projector_module
from projections.projector import Projector
from projections.settings import ProjectorOptions
from services import config


class SilentCoordinator:
    """A consumer whose offset commits wait for an answer that does not come."""

    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.answer = asyncio.Event()

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))
        await self.answer.wait()


async def test_a_commit_the_coordinator_does_not_answer_holds_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(projector_module, "_KAFKA_COMMIT_WAIT_S", 0.2)
    projector = Projector(config.load({}), ProjectorOptions())
    consumer = SilentCoordinator()
    projector._consumer = consumer  # type: ignore[assignment]
    projector.expected = {0: 5, 1: None}
    try:
        await asyncio.wait_for(projector._commit_kafka(), 1)  # returns at once: the commit goes on behind
        assert consumer.commits == [{TopicPartition(projector.topic, 0): 5}]
        projector._last_kafka_commit = 0.0  # due again, but the first one is still in flight: none added
        await asyncio.wait_for(projector._commit_kafka(), 1)
        assert len(consumer.commits) == 1
        # A revocation's forced commit waits a bounded time, then the revocation goes on.
        await asyncio.wait_for(projector._commit_kafka(force=True), 2)
        assert len(consumer.commits) == 2
        consumer.answer.set()
        await asyncio.wait_for(projector._kafka_commit, 1)  # type: ignore[arg-type]
        projector._last_kafka_commit = 0.0
        await projector._commit_kafka()
        await asyncio.wait_for(projector._kafka_commit, 1)  # type: ignore[arg-type]
        assert len(consumer.commits) == 3, "once answered, commits resume"
    finally:
        consumer.answer.set()
        if projector._kafka_commit is not None:
            await projector._kafka_commit
        await projector.db.close()
