"""Idempotency-Key against the real broker: one key is one order, whatever the concurrency or restarts."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from events.codec import decode
from events.topics import Topics
from services.config import Settings
from services.ingress.intake import order_id_for
from services.ingress.validation import parse_order
from tests.integration.test_ingress_api import (
    SEED_BUY_SOL,
    SEED_SELL_SOL,
    URL,
    assert_logged,
    read_topic,
    running,
    settings_for,
)

pytestmark = pytest.mark.integration


async def test_fifty_concurrent_identical_posts_make_one_order_and_one_record(
    infra: Settings, topics: Topics, unique: str
) -> None:
    settings = settings_for(infra, topics)
    key = f"burst-{unique}"
    async with running(settings) as client:
        answers = await asyncio.gather(
            *(client.post(URL, json=SEED_SELL_SOL, headers={"Idempotency-Key": key}) for _ in range(50))
        )
        replay = await client.post(URL, json=SEED_SELL_SOL, headers={"Idempotency-Key": key})
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {201, 409} and 201 in statuses, statuses
    conflicts = [r for r in answers if r.status_code == 409]
    assert all(
        r.headers["retry-after"] and r.json()["details"][0]["field"] == "Idempotency-Key" for r in conflicts
    )
    accepted = [r.json() for r in answers if r.status_code == 201] + [replay.json()]
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert {a["orderId"] for a in accepted} == {order_id_for(key)}
    assert all(a == accepted[0] for a in accepted), "every 201 for the key is the same answer"
    records = await read_topic(settings, topics.requests)
    assert len(records) == 1
    event = assert_logged(records, accepted[0])
    assert event.data.idempotency_key == key
    assert event.data.request_hash == parse_order(orjson.dumps(SEED_SELL_SOL), settings.tokens).fingerprint()


async def test_the_key_with_another_body_is_a_422_and_writes_nothing(
    infra: Settings, topics: Topics, unique: str
) -> None:
    settings = settings_for(infra, topics)
    key = {"Idempotency-Key": f"reuse-{unique}"}
    async with running(settings) as client:
        first = await client.post(URL, json=SEED_SELL_SOL, headers=key)
        other = await client.post(URL, json=SEED_BUY_SOL, headers=key)
        same_meaning = await client.post(
            URL, json={**SEED_SELL_SOL, "slippageBps": 100.0, "note": 1}, headers=key
        )
    assert first.status_code == 201
    assert other.status_code == 422
    assert other.json()["details"][0]["field"] == "Idempotency-Key"
    assert "different request" in other.json()["error"]
    assert same_meaning.status_code == 201 and same_meaning.json() == first.json()
    assert len(await read_topic(settings, topics.requests)) == 1


async def test_a_restarted_ingress_gives_the_key_the_same_order_id(
    infra: Settings, topics: Topics, unique: str
) -> None:
    settings = settings_for(infra, topics)
    key = {"Idempotency-Key": f"restart-{unique}"}
    async with running(settings) as client:
        before = await client.post(URL, json=SEED_SELL_SOL, headers=key)
    async with running(settings) as client:  # a fresh process: its key store is empty
        after = await client.post(URL, json=SEED_SELL_SOL, headers=key)
    assert before.status_code == after.status_code == 201
    assert before.json()["orderId"] == after.json()["orderId"] == order_id_for(key["Idempotency-Key"])
    records = await read_topic(settings, topics.requests)
    # Two records of one order: the router keeps the first OrderRequested of an order id and drops the rest.
    assert {r.key for r in records} == {before.json()["orderId"].encode()}
    first, second = (decode(r.value) for r in sorted(records, key=lambda r: r.offset))
    assert first.data == second.data
    assert first.event_id != second.event_id
