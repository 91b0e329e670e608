"""Who may call the venue server and how much they may send: the shared secret (401) and the body limit (413).

Real uvicorn on a loopback port, real HTTP clients; the secret is a fresh random one per test.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import secrets
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from services.envvars import ConfigError
from services.venue.access import MAX_BODY_BYTES
from services.venue.client import HttpVenue
from services.venue.config import VenueConfig
from services.venue.interface import VenueUnavailable
from services.venue.server import create_app
from services.venue.simulator import SimulatedVenue
from tests.venue_harness import cid, serving, simulated

QUOTE = {"base": "SOL", "quote": "USDC", "side": "sell", "amount_in": 1.0}
SUBMIT = {**QUOTE, "limit_price": 1.0}


@contextlib.asynccontextmanager
async def guarded() -> AsyncIterator[tuple[str, str, dict[str, SimulatedVenue]]]:
    secret = secrets.token_urlsafe(32)
    async with simulated() as sims, serving(create_app(sims, secret=secret)) as url:
        yield url, secret, sims


ROUTES = [
    ("POST", "/venues/raydium/quote", QUOTE),
    ("POST", "/venues/raydium/submit", {**SUBMIT, "client_order_id": "x-1"}),
    ("POST", "/venues/raydium/quote:batch", {"requests": [QUOTE]}),
    ("POST", "/venues/raydium/submit:batch", {"requests": [{**SUBMIT, "client_order_id": "x-2"}]}),
    ("POST", "/venues/raydium/swaps:batch-status", {"client_order_ids": ["x-1"]}),
    ("GET", "/venues/raydium/swaps/x-1", None),
    ("GET", "/venues/raydium/settlements", None),
    ("GET", "/venues/raydium/ledger?detail=1", None),
    (
        "POST",
        "/venues/raydium/pools",
        {"base": "BONK", "quote": "USDC", "base_reserve": 1e9, "quote_reserve": 1e5},
    ),
    ("GET", "/metrics", None),
    ("GET", "/no/such/path", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[p for _, p, _ in ROUTES])
async def test_every_route_but_health_needs_the_secret(method: str, path: str, body: object) -> None:
    async with guarded() as (url, secret, sims), aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": f"Bearer {secret[:-1]}"}, {"Authorization": f"Basic {secret}"}):
            async with http.request(method, url + path, json=body, headers=headers) as reply:
                assert reply.status == 401
                assert reply.headers["WWW-Authenticate"] == "Bearer"
                assert (await reply.json())["kind"] == "unauthorized"
        assert len(sims["raydium"].ledger) == 0  # nothing reached a venue
        assert not sims["raydium"].pools.lists("BONK", "USDC")
        async with http.get(f"{url}/health") as reply:
            assert reply.status == 200


async def test_an_operator_with_the_secret_lists_a_pool() -> None:
    listing = {"base": "BONK", "quote": "USDC", "base_reserve": 4e9, "quote_reserve": 100_000}
    async with guarded() as (url, secret, sims), aiohttp.ClientSession() as http:
        bearer = {"Authorization": f"Bearer {secret}"}
        async with http.post(f"{url}/venues/meteora/pools", json=listing, headers=bearer) as reply:
            assert reply.status == 201
            assert await reply.json() == {
                "token_a": "BONK", "token_b": "USDC", "reserve_a": 4e9, "reserve_b": 100_000.0,
            }  # fmt: skip
        async with http.post(f"{url}/venues/meteora/pools", json=listing, headers=bearer) as reply:
            assert reply.status == 400 and "listed already" in (await reply.json())["error"]
        async with http.post(f"{url}/venues/meteora/pools", json={"base": "BONK"}, headers=bearer) as reply:
            assert reply.status == 400 and "quote" in (await reply.json())["error"]
        assert sims["meteora"].pools.lists("BONK", "USDC") and not sims["raydium"].pools.lists("BONK", "USDC")


async def test_the_client_sends_the_secret_on_every_call_and_on_the_feed() -> None:
    async with guarded() as (url, secret, _), HttpVenue("meteora", url, secret=secret) as meteora:
        quote = await meteora.quote("SOL", "USDC", "buy", 150.0)
        order = cid()
        feed = meteora.follow_settlements()
        first = asyncio.ensure_future(feed.__anext__())
        receipt = await meteora.submit(order, "SOL", "USDC", "buy", 150.0, quote.price * 1.01)
        settled = await asyncio.wait_for(first, 30)
        await feed.aclose()
        assert settled.client_order_id == order and settled.tx_hash == receipt.tx_hash
        assert [s.state for s in await meteora.status_many([order, cid()])] == ["confirmed", "unknown"]
        assert (await meteora.status(order)).state == "confirmed"
        assert (await meteora.ledger_stats())["size"] == 1


async def test_a_client_with_the_wrong_secret_is_told_unavailable_and_nothing_executes() -> None:
    async with guarded() as (url, _, sims), HttpVenue("raydium", url, secret="x" * 32) as raydium:
        order = cid()
        with pytest.raises(VenueUnavailable, match=r"HTTP 401.*VENUE_SECRET"):
            await raydium.submit(order, "SOL", "USDC", "sell", 1.0, 1.0)  # retried by a router, not failed
        with pytest.raises(VenueUnavailable, match="HTTP 401"):
            await raydium.quote("SOL", "USDC", "sell", 1.0)
        assert sims["raydium"].ledger_count(order) == 0


async def test_a_declared_body_over_the_limit_is_refused_before_it_is_read() -> None:
    async with guarded() as (url, secret, _), aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {secret}", "Content-Length": str(MAX_BODY_BYTES + 1)}
        reader, writer = await asyncio.open_connection(*url.removeprefix("http://").split(":"))
        head = "".join(f"{k}: {v}\r\n" for k, v in auth.items())
        writer.write(f"POST /venues/raydium/quote HTTP/1.1\r\nHost: venue\r\n{head}\r\n".encode())
        await writer.drain()  # the head only: the 1 MiB body is never sent, and never waited for
        status_line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        assert status_line.split()[1] == b"413"
        big = io.BytesIO(orjson.dumps({"client_order_ids": ["x" * 1000] * 1100}))  # ~1.1 MB, 1,100 ids
        del auth["Content-Length"]  # aiohttp declares the real one
        async with http.post(f"{url}/venues/raydium/swaps:batch-status", data=big, headers=auth) as reply:
            assert reply.status == 413
            assert await reply.json() == {
                "error": f"request body exceeds {MAX_BODY_BYTES} bytes",
                "kind": "too_large",
            }


async def test_a_chunked_body_is_cut_when_it_passes_the_limit() -> None:
    async with guarded() as (url, secret, _), aiohttp.ClientSession() as http:
        sent = 0

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
            nonlocal sent
            yield b'{"client_order_ids": ['
            for _ in range(200):
                sent += 10_000
                yield b'"' + b"x" * 9_996 + b'", '
            yield b'"end"]}'

        headers = {"Authorization": f"Bearer {secret}"}
        async with http.post(
            f"{url}/venues/raydium/swaps:batch-status", data=chunks(), headers=headers
        ) as reply:
            assert reply.status == 413 and (await reply.json())["kind"] == "too_large"
        assert sent > MAX_BODY_BYTES


def test_the_secret_is_never_in_the_config_repr_and_must_be_long() -> None:
    secret = secrets.token_urlsafe(32)
    config = VenueConfig.from_env({"VENUE_SECRET": secret})
    assert config.secret == secret and secret not in repr(config)
    with pytest.raises(ConfigError, match="VENUE_SECRET must be at least 16") as short:
        VenueConfig.from_env({"VENUE_SECRET": "hunter2"})
    assert "hunter2" not in str(short.value)
    with pytest.raises(ConfigError, match="VENUE_SECRET"):
        VenueConfig.from_env({"VENUE_SECRET": "a secret with spaces in it"})


@pytest.mark.parametrize(
    ("host", "secret", "refused"),
    [
        ("127.0.0.1", "", False),
        ("::1", "", False),
        ("localhost", "", False),
        ("0.0.0.0", "", True),
        ("::", "", True),
        ("10.1.2.3", "", True),
        ("venue.internal", "", True),
        ("0.0.0.0", "s" * 32, False),
    ],
)
def test_no_secret_is_allowed_on_loopback_only(host: str, secret: str, refused: bool) -> None:
    config = VenueConfig.from_env({"VENUE_HOST": host, "VENUE_SECRET": secret})
    if refused:
        with pytest.raises(ConfigError, match="not a loopback address and VENUE_SECRET is unset"):
            config.check_exposure()
    else:
        config.check_exposure()
