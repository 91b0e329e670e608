"""Idempotency-Key against the real broker: one key is one order, whatever the concurrency or restarts."""

from __future__ import annotations

import asyncio

import orjson
import pytest

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


async def test_a_restarted_ingress_replays_the_key_and_refuses_another_body(
    infra: Settings, topics: Topics, unique: str
) -> None:
    settings = settings_for(infra, topics)
    key = {"Idempotency-Key": f"restart-{unique}"}
    async with running(settings) as client:
        before = await client.post(URL, json=SEED_SELL_SOL, headers=key)
    async with running(settings) as client:  # a fresh process: its in-process cache is empty
        other = await client.post(URL, json=SEED_BUY_SOL, headers=key)
        again = await client.post(URL, json=SEED_SELL_SOL, headers=key)
    assert before.status_code == 201
    assert other.status_code == 422 and other.json()["details"][0]["field"] == "Idempotency-Key"
    assert again.status_code == 201 and again.json() == before.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert before.json()["orderId"] == order_id_for(key["Idempotency-Key"])
    records = await read_topic(settings, topics.requests)
    assert len(records) == 1, "the restarted ingress wrote nothing: the key was known durably"


async def test_fifty_concurrent_identical_posts_over_two_ingress_apps_make_one_order(
    infra: Settings, topics: Topics, unique: str
) -> None:
    """Two apps, each with its own cache, pool and producer (two API processes): only PostgreSQL is shared."""
    settings = settings_for(infra, topics)
    key = {"Idempotency-Key": f"two-{unique}"}
    async with running(settings) as one, running(settings) as two:
        answers = await asyncio.gather(
            *((one if i % 2 else two).post(URL, json=SEED_SELL_SOL, headers=key) for i in range(50))
        )
        replays = [await c.post(URL, json=SEED_SELL_SOL, headers=key) for c in (one, two)]
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {201, 409} and 201 in statuses, statuses
    accepted = {r.text for r in answers if r.status_code == 201} | {r.text for r in replays}
    assert len(accepted) == 1, "every 201 for the key, from either app, is the same answer"
    assert all(r.status_code == 201 and r.headers["idempotent-replayed"] == "true" for r in replays)
    records = await read_topic(settings, topics.requests)
    assert len(records) == 1
