"""Accounts as an operator and a client meet them: `oee accounts` on the command line, two `oee api` processes
under `AUTH=keys` on the same topics, a revocation that both refuse within 5 s, one order for 50 concurrent
identical requests spread over both, and `AUTH=off` refusing to start on a public address."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from events.codec import decode
from events.topics import Topics
from services.config import Settings
from tests.e2e.harness import Proc, free_port, service, stop_all, wait_http
from tests.integration.test_ingress_api import read_topic

pytestmark = pytest.mark.e2e

ORDER = {"baseToken": "SOL", "quoteToken": "USDC", "side": "sell", "amountIn": 1.5, "slippageBps": 100}


def oee(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """`oee ARGS` as an operator runs it, against the test's database."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
    }
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


@dataclasses.dataclass
class Apis:
    urls: list[str]
    procs: list[Proc]
    settings: Settings


@pytest.fixture
async def apis(infra: Settings, topics: Topics, tmp_path: Path) -> AsyncIterator[Apis]:
    settings = dataclasses.replace(infra, topic_prefix=topics.events.removesuffix("orders.events"))
    procs: list[Proc] = []
    urls: list[str] = []
    try:
        for _ in range(2):
            port = free_port()
            env = {"PORT": str(port), "AUTH": "keys", "LAG_INTERVAL_MS": "0", "ACCOUNT_ORDER_RATE": "0"}
            procs.append(service("api", settings, tmp_path, env).start())
            urls.append(f"http://127.0.0.1:{port}")
        for url, proc in zip(urls, procs, strict=True):
            await wait_http(f"{url}/health", proc)
        yield Apis(urls, procs, settings)
    finally:
        stop_all(procs)


def create(settings: Settings, name: str) -> tuple[str, str]:
    """`oee accounts create NAME`: (the key, from the last line alone, and the key id the line before names)."""
    done = oee(settings, "accounts", "create", name)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    key = lines[-1]
    assert key.startswith("oee_") and " " not in key, done.stdout
    key_id = key.split("_")[1]
    assert key_id in lines[-2]
    return key, key_id


def test_the_cli_prints_the_key_last_and_never_again(infra: Settings, unique: str) -> None:
    key, key_id = create(infra, f"cli-{unique}")
    listed = oee(infra, "accounts", "list")
    assert listed.returncode == 0 and f"cli-{unique}" in listed.stdout and key_id in listed.stdout
    assert key not in listed.stdout and key.split("_", 2)[2] not in listed.stdout
    again = oee(infra, "accounts", "create", f"cli-{unique}")
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "exists already" in again.stderr
    bad = oee(infra, "accounts", "create", "Not Valid")
    assert bad.returncode == 1 and "must be 1-63 characters" in bad.stderr
    assert oee(infra, "accounts", "revoke", "nope").returncode == 1


async def test_a_revoked_key_is_refused_by_every_api_process_within_5_s(apis: Apis, unique: str) -> None:
    key, key_id = create(apis.settings, f"rev-{unique}")
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(headers=headers, timeout=10) as client:
        for url in apis.urls:  # both processes know (and cache) the key
            assert (await client.get(f"{url}/api/orders")).status_code == 200
        revoked = oee(apis.settings, "accounts", "revoke", key_id)
        assert revoked.returncode == 0, revoked.stderr
        start = time.monotonic()
        pending = set(apis.urls)
        took: dict[str, float] = {}
        while pending and time.monotonic() - start < 10:
            for url in list(pending):
                if (await client.get(f"{url}/api/orders")).status_code == 401:
                    took[url] = time.monotonic() - start
                    pending.discard(url)
            await asyncio.sleep(0.05)
    assert not pending, f"still accepted after 10 s by {pending}"
    assert max(took.values()) < 5.0, took


async def test_fifty_identical_posts_over_two_api_processes_make_one_order(
    apis: Apis, topics: Topics, unique: str
) -> None:
    key, _ = create(apis.settings, f"dup-{unique}")
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": f"twice-{unique}"}
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:
        answers = await asyncio.gather(
            *(client.post(f"{apis.urls[i % 2]}/api/orders/execute", json=ORDER) for i in range(50))
        )
        replays = [await client.post(f"{url}/api/orders/execute", json=ORDER) for url in apis.urls]
        other = await client.post(f"{apis.urls[1]}/api/orders/execute", json={**ORDER, "side": "buy"})
    assert {r.status_code for r in answers} <= {201, 409}, [r.text for r in answers if r.status_code >= 400]
    assert len({r.text for r in [*answers, *replays] if r.status_code == 201}) == 1
    assert other.status_code == 422
    records = await read_topic(apis.settings, topics.requests)
    assert len(records) == 1 and decode(records[0].value).data.account_id == f"dup-{unique}"  # type: ignore[attr-defined]


def test_auth_off_refuses_to_start_on_a_public_address(infra: Settings, tmp_path: Path) -> None:
    proc = service("api", infra, tmp_path, {"AUTH": "off", "HOST": "0.0.0.0", "PORT": str(free_port())})
    done = subprocess.run(proc.argv, env=proc.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert done.stderr.startswith("oee api: AUTH=off on HOST=0.0.0.0 would let anyone"), done.stderr
