"""The venue over HTTP: the server and `HttpVenue` keep the interface, and a lost reply stays "unknown".

Every test talks over a real loopback socket: uvicorn serving the venue app, or a raw asyncio server that
misbehaves on purpose (never answers, hangs up, answers 500) to pin down what each failure means to a caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.venue.client import HttpVenue
from services.venue.clock import ManualClock
from services.venue.interface import (
    MAX_STATUS_BATCH,
    SubmitConflict,
    SubmitExpired,
    SubmitOutcomeUnknown,
    Venue,
    VenueRejected,
    VenueUnavailable,
)
from services.venue.ledger import Ledger
from services.venue.server import create_app
from tests.venue_harness import cid, serving, simulated

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[str]:
    """A TCP server that reads one request and then does what `handler` says."""
    release = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await handler(reader, writer)
            await release.wait()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        release.set()
        server.close()
        await server.wait_closed()


async def test_round_trip_keeps_the_interface() -> None:
    clock = ManualClock()
    async with simulated(execution_latency_s=5.0, clock=clock) as sims, serving(create_app(sims)) as url:
        async with HttpVenue("raydium", url) as raydium, HttpVenue("meteora", url) as meteora:
            assert isinstance(raydium, Venue)
            local = await sims["raydium"].quote("SOL", "USDC", "sell", 2.0)
            assert await raydium.quote("SOL", "USDC", "sell", 2.0) == local  # same pool, same (manual) time
            order = cid()
            receipt = await raydium.submit(order, "SOL", "USDC", "sell", 2.0, 100.0)
            assert receipt == await raydium.submit(order, "SOL", "USDC", "sell", 2.0, 100.0)
            assert (await raydium.status(order)).state == "pending"
            clock.advance(5.0)
            settled = await sims["raydium"].wait_settled(order)
            assert await raydium.status(order) == settled and settled.state == "confirmed"
            batch = await raydium.status_many([order, cid()])
            assert [s.state for s in batch] == ["confirmed", "unknown"] and batch[0] == settled
            assert await raydium.ledger_stats() == {
                "size": 1,
                "pending": 0,
                "max_entries_per_id": 1,
                "quotes_in_progress": 0,
            }
            assert (await meteora.status(order)).state == "unknown"  # one ledger per venue


async def test_health_lists_the_venues() -> None:
    async with simulated() as sims, serving(create_app(sims)) as url, aiohttp.ClientSession() as http:
        async with http.get(f"{url}/health") as reply:
            assert reply.status == 200
            assert await reply.json() == {"status": "ok", "venues": ["meteora", "raydium"]}


async def test_outage_is_a_503_and_venue_unavailable() -> None:
    async with simulated(failure_rate=1.0) as sims, serving(create_app(sims)) as url:
        async with HttpVenue("meteora", url) as meteora:
            with pytest.raises(VenueUnavailable, match="simulated outage"):
                await meteora.quote("SOL", "USDC", "buy", 100.0)
            order = cid()
            with pytest.raises(VenueUnavailable, match="HTTP 503"):
                await meteora.submit(order, "SOL", "USDC", "buy", 100.0, 200.0)
            assert sims["meteora"].ledger_count(order) == 0


async def test_dropped_reply_is_outcome_unknown_and_status_has_the_truth() -> None:
    async with simulated(drop_reply_rate=1.0) as sims, serving(create_app(sims)) as url:
        async with HttpVenue("raydium", url) as raydium:
            order = cid()
            with pytest.raises(SubmitOutcomeUnknown, match="HTTP 504"):
                await raydium.submit(order, "SOL", "USDC", "sell", 1.0, 1.0)
            await sims["raydium"].wait_settled(order)
            assert (await raydium.status(order)).state == "confirmed"
            assert sims["raydium"].ledger_count(order) == 1


async def test_bad_requests_are_rejected_not_retried() -> None:
    async with simulated() as sims, serving(create_app(sims)) as url:
        async with HttpVenue("raydium", url) as raydium, HttpVenue("orca", url) as ghost:
            with pytest.raises(VenueRejected, match="not listed"):
                await raydium.quote("SOL", "BONK", "sell", 1.0)
            with pytest.raises(VenueRejected, match="amount_in"):
                await raydium.submit(cid(), "SOL", "USDC", "sell", -1.0, 1.0)
            with pytest.raises(VenueRejected, match="no venue named"):
                await ghost.quote("SOL", "USDC", "sell", 1.0)


class HoldSubmitReplies:
    """ASGI middleware: lets a submit execute, then holds its reply until `release` is set."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.release = asyncio.Event()
        self.held = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or "/submit" not in scope["path"]:  # alone or as a batch
            await self.app(scope, receive, send)
            return

        async def hold_then_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.held.set()
                await self.release.wait()
            await send(message)

        await self.app(scope, receive, hold_then_send)


async def test_a_reply_lost_to_a_timeout_is_reconciled_by_status() -> None:
    async with simulated() as sims:
        app = HoldSubmitReplies(create_app(sims))
        async with serving(app) as url, HttpVenue("raydium", url, timeout_s=0.3) as raydium:
            try:
                quote = await raydium.quote("SOL", "USDC", "sell", 1.0)
                order = cid()
                with pytest.raises(SubmitOutcomeUnknown, match="SocketTimeoutError"):
                    await raydium.submit(order, "SOL", "USDC", "sell", 1.0, quote.price * 0.99)
                assert app.held.is_set()  # the venue did accept it: only the reply was lost
                settled = await sims["raydium"].wait_settled(order)
                assert await raydium.status(order) == settled and settled.state == "confirmed"
                assert sims["raydium"].ledger_count(order) == 1
                assert (await raydium.ledger_stats())["max_entries_per_id"] == 1
            finally:
                app.release.set()


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    pass  # raw_server then waits for the end of the test


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    raise ConnectionError("hang up")


def answer(status: str) -> Handler:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        raise ConnectionError("done")

    return reply


@pytest.mark.parametrize(
    ("handler", "on_submit", "match"),
    [
        (never_answer, SubmitOutcomeUnknown, "no reply"),
        (hang_up, SubmitOutcomeUnknown, "ServerDisconnected"),
        (answer("500 Internal Server Error"), SubmitOutcomeUnknown, "HTTP 500"),
        (answer("502 Bad Gateway"), SubmitOutcomeUnknown, "HTTP 502"),
        (answer("503 Service Unavailable"), VenueUnavailable, "HTTP 503"),
    ],
    ids=["never-answers", "hangs-up", "500", "502", "503"],
)
async def test_what_each_failure_means_to_the_caller(handler: Handler, on_submit: type, match: str) -> None:
    async with raw_server(handler) as url, HttpVenue("raydium", url, timeout_s=0.2) as venue:
        with pytest.raises(on_submit, match=match):
            await venue.submit(cid(), "SOL", "USDC", "sell", 1.0, 1.0)
        with pytest.raises(VenueUnavailable):  # reads are safe to repeat: always "unavailable"
            await venue.quote("SOL", "USDC", "sell", 1.0)
        with pytest.raises(VenueUnavailable):
            await venue.status(cid())


async def test_an_unreachable_server_is_venue_unavailable() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nobody listens there now
    async with HttpVenue("raydium", f"http://127.0.0.1:{port}", timeout_s=1.0) as venue:
        with pytest.raises(VenueUnavailable, match="not reached"):
            await venue.submit(cid(), "SOL", "USDC", "sell", 1.0, 1.0)


async def test_the_settlement_feed_pushes_each_settlement_once() -> None:
    clock = ManualClock()
    async with simulated(clock=clock, execution_latency_s=1.0) as sims, serving(create_app(sims)) as url:
        sim = sims["meteora"]
        subscribed, unsubscribed = asyncio.Event(), asyncio.Event()
        subscribe = sim.on_settled

        def spy(callback: Any) -> Callable[[], None]:
            unsubscribe = subscribe(callback)
            subscribed.set()
            return lambda: (unsubscribe(), unsubscribed.set())

        sim.on_settled = spy  # type: ignore[method-assign]
        async with HttpVenue("meteora", url) as meteora:
            orders = [cid() for _ in range(50)]
            for order in orders:
                await meteora.submit(order, "SOL", "USDC", "buy", 150.0, 1e6)
            seen: list[str] = []
            all_seen = asyncio.Event()

            async def follow() -> None:
                async for status in meteora.follow_settlements():
                    assert status.state == "confirmed"
                    seen.append(status.client_order_id)
                    if len(seen) == len(orders):
                        all_seen.set()

            follower = asyncio.create_task(follow())
            await subscribed.wait()
            clock.advance(1.0)
            await all_seen.wait()
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            assert sorted(seen) == sorted(orders)
        await unsubscribed.wait()  # the server noticed the reader left and dropped its subscription


class CountRequests:
    """ASGI middleware: the paths of the HTTP requests the app served."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


async def test_calls_made_together_share_one_request_and_keep_their_own_outcomes() -> None:
    async with simulated(clock=ManualClock()) as sims:  # prices held still, to compare with local quotes
        app = CountRequests(create_app(sims))
        async with serving(app) as url, HttpVenue("raydium", url) as raydium:
            await raydium.quote("SOL", "USDC", "sell", 1.0)  # opens the connection
            app.paths.clear()
            quotes = await asyncio.gather(
                *(raydium.quote("SOL", "USDC", "sell", float(n)) for n in range(1, 50)),
                raydium.quote("SOL", "BONK", "sell", 1.0),
                return_exceptions=True,
            )
            assert app.paths == ["/venues/raydium/quote:batch"]
            assert [q.amount_in for q in quotes[:-1]] == [float(n) for n in range(1, 50)]  # type: ignore[union-attr]
            assert isinstance(quotes[-1], VenueRejected) and "not listed" in quotes[-1].reason
            for q in quotes[:-1]:  # each item priced as if it came alone
                assert q == await sims["raydium"].quote("SOL", "USDC", "sell", q.amount_in)  # type: ignore[union-attr]

            orders = [cid() for _ in range(30)]
            receipts = await asyncio.gather(
                *(raydium.submit(o, "SOL", "USDC", "sell", 1.0, 1.0) for o in orders),
                raydium.submit(cid(), "SOL", "USDC", "sell", 1.0, -5.0),
                return_exceptions=True,
            )
            assert app.paths[1:] == ["/venues/raydium/submit:batch"]
            assert [r.client_order_id for r in receipts[:-1]] == orders  # type: ignore[union-attr]
            assert isinstance(receipts[-1], VenueRejected)
            assert all(sims["raydium"].ledger_count(o) == 1 for o in orders)


async def test_a_batch_whose_reply_is_lost_leaves_every_submit_unknown_and_each_swap_once() -> None:
    async with simulated() as sims:
        app = HoldSubmitReplies(create_app(sims))
        async with serving(app) as url, HttpVenue("raydium", url, timeout_s=0.3) as raydium:
            try:
                orders = [cid() for _ in range(20)]
                outcomes = await asyncio.gather(
                    *(raydium.submit(o, "SOL", "USDC", "sell", 1.0, 1.0) for o in orders),
                    return_exceptions=True,
                )
                assert all(isinstance(o, SubmitOutcomeUnknown) for o in outcomes), outcomes
                assert len({id(o) for o in outcomes}) == len(orders)  # one error each, not a shared one
                for order in orders:  # accepted all the same: status has the truth
                    assert (await sims["raydium"].wait_settled(order)).state == "confirmed"
                    assert sims["raydium"].ledger_count(order) == 1
            finally:
                app.release.set()


async def test_a_caller_that_stops_waiting_does_not_disturb_the_others_in_its_batch() -> None:
    async with simulated(quote_latency_s=0.2) as sims, serving(create_app(sims)) as url:
        async with HttpVenue("meteora", url) as meteora:
            impatient = asyncio.wait_for(meteora.quote("SOL", "USDC", "buy", 10.0), 0.05)
            patient = meteora.quote("SOL", "USDC", "buy", 20.0)
            outcomes = await asyncio.gather(impatient, patient, return_exceptions=True)
            assert isinstance(outcomes[0], TimeoutError)
            assert outcomes[1].amount_in == 20.0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "body",
    [b"[]", b'{"requests": {}}', b'{"requests": []}', b'{"requests": "x"}'],
    ids=["not-an-object", "object", "empty", "string"],
)
async def test_an_unreadable_batch_is_a_400(body: bytes) -> None:
    async with simulated() as sims, serving(create_app(sims)) as url, aiohttp.ClientSession() as http:
        async with http.post(f"{url}/venues/raydium/quote:batch", data=body) as reply:
            assert reply.status == 400
            assert (await reply.json())["kind"] == "rejected"


async def test_a_batch_item_that_is_not_an_object_is_rejected_alone() -> None:
    async with simulated() as sims, serving(create_app(sims)) as url, aiohttp.ClientSession() as http:
        good = {"base": "SOL", "quote": "USDC", "side": "sell", "amount_in": 1.0}
        payload = {"requests": [good, 7, {**good, "side": "hold"}]}
        async with http.post(f"{url}/venues/raydium/quote:batch", json=payload) as reply:
            assert reply.status == 200
            results = (await reply.json())["results"]
        assert [r["status"] for r in results] == [200, 400, 400]
        assert results[0]["body"]["amount_in"] == 1.0
        assert results[1]["error"] == "body must be a JSON object"
        assert results[2]["error"] == "side must be 'buy' or 'sell'"


async def test_a_conflict_is_a_409_and_never_the_first_receipt() -> None:
    async with simulated() as sims, serving(create_app(sims)) as url:
        async with HttpVenue("raydium", url) as raydium, HttpVenue("meteora", url) as meteora:
            order = cid()
            receipt = await raydium.submit(order, "SOL", "USDC", "sell", 1.0, 1.0)
            with pytest.raises(SubmitConflict, match="other parameters"):  # same venue, other swap
                await raydium.submit(order, "SOL", "USDC", "sell", 2.0, 1.0)
            with pytest.raises(SubmitConflict, match="taken by a swap on raydium"):  # the other venue
                await meteora.submit(order, "SOL", "USDC", "sell", 1.0, 1.0)
            assert await raydium.submit(order, "SOL", "USDC", "sell", 1.0, 1.0) == receipt
            assert sims["meteora"].ledger_count(order) == 0 and sims["raydium"].ledger_count(order) == 1
        async with aiohttp.ClientSession() as http:
            body = {"client_order_id": order, "base": "SOL", "quote": "USDC", "side": "buy"}
            body |= {"amount_in": 150.0, "limit_price": 1e6}
            async with http.post(f"{url}/venues/meteora/submit", json=body) as reply:
                assert reply.status == 409 and (await reply.json())["kind"] == "conflict"
            async with http.post(f"{url}/venues/meteora/submit:batch", json={"requests": [body]}) as reply:
                assert [r["status"] for r in (await reply.json())["results"]] == [409]


async def test_a_late_submit_is_a_410_and_the_deadline_travels_with_the_receipt() -> None:
    async with simulated() as sims, serving(create_app(sims)) as url, HttpVenue("raydium", url) as raydium:
        late, on_time = cid(), cid()
        with pytest.raises(SubmitExpired, match="after its valid_until"):
            await raydium.submit(
                late, "SOL", "USDC", "sell", 1.0, 1.0, datetime.now(UTC) - timedelta(seconds=1)
            )
        assert (await raydium.status(late)).state == "unknown" and sims["raydium"].ledger_count(late) == 0
        deadline = datetime.now(UTC) + timedelta(minutes=1)
        receipt = await raydium.submit(on_time, "SOL", "USDC", "sell", 1.0, 1.0, deadline)
        assert receipt.valid_until == deadline


async def test_a_journal_that_cannot_write_is_a_503_alone_and_in_a_batch() -> None:
    async with simulated() as sims:
        sims["raydium"].ledger = Ledger(Path("/dev/full"))  # a disk that is always full (nothing to replay)
        async with serving(create_app(sims)) as url, HttpVenue("raydium", url) as raydium:
            orders = [cid() for _ in range(3)]
            outcomes = await asyncio.gather(
                *(raydium.submit(o, "SOL", "USDC", "sell", 1.0, 1.0) for o in orders), return_exceptions=True
            )
            assert all(isinstance(o, VenueUnavailable) and "ENOSPC" in o.reason for o in outcomes), outcomes
            async with aiohttp.ClientSession() as http:
                body = {"client_order_id": cid(), "base": "SOL", "quote": "USDC", "side": "sell"}
                body |= {"amount_in": 1.0, "limit_price": 1.0}
                async with http.post(f"{url}/venues/raydium/submit", json=body) as reply:
                    assert reply.status == 503 and (await reply.json())["kind"] == "unavailable"
            assert [s.state for s in await raydium.status_many(orders)] == ["unknown"] * 3
            assert (await raydium.quote("SOL", "USDC", "sell", 1.0)).price > 0  # still serving
            assert len(sims["raydium"].ledger) == 0 and sims["raydium"].pending_count == 0


async def test_status_many_asks_in_chunks_the_venue_accepts() -> None:
    async with simulated() as sims:
        app = CountRequests(create_app(sims))
        async with serving(app) as url, HttpVenue("raydium", url) as raydium:
            known = cid()
            await raydium.submit(known, "SOL", "USDC", "sell", 1.0, 1.0)
            app.paths.clear()
            ids = [cid() for _ in range(2 * MAX_STATUS_BATCH)] + [known]
            statuses = await raydium.status_many(ids)
            assert [s.client_order_id for s in statuses] == ids
            assert statuses[-1].state in ("pending", "confirmed") and statuses[0].state == "unknown"
            assert app.paths == ["/venues/raydium/swaps:batch-status"] * 3
            assert await raydium.status_many([]) == [] and len(app.paths) == 3


async def test_batches_beyond_the_count_limit_are_refused() -> None:
    from services.venue.server import MAX_BATCH

    async with simulated() as sims, serving(create_app(sims)) as url, aiohttp.ClientSession() as http:
        too_many = {"requests": [{}] * (MAX_BATCH + 1)}
        async with http.post(f"{url}/venues/raydium/submit:batch", json=too_many) as reply:
            assert reply.status == 400 and "1 to 10000" in (await reply.json())["error"]
        ids = {"client_order_ids": [str(n) for n in range(MAX_BATCH + 1)]}
        async with http.post(f"{url}/venues/raydium/swaps:batch-status", json=ids) as reply:
            assert reply.status == 400 and "at most 10000" in (await reply.json())["error"]
        assert len(sims["raydium"].ledger) == 0


async def test_a_swap_beyond_the_pool_bounds_is_a_400_naming_the_limit_and_the_pair_still_trades() -> None:
    huge = {"base": "ETH", "quote": "USDT", "side": "buy", "amount_in": 1e150}
    async with (
        simulated() as sims,
        serving(create_app(sims)) as url,
        HttpVenue("raydium", url) as raydium,
        aiohttp.ClientSession() as http,
    ):
        async with http.post(f"{url}/venues/raydium/quote", json=huge) as reply:
            assert reply.status == 400
            body = await reply.json()
            assert body["kind"] == "rejected" and "over the 15 % limit" in body["error"]
        submit = huge | {"client_order_id": cid(), "limit_price": 1e300}
        async with http.post(f"{url}/venues/meteora/submit:batch", json={"requests": [submit]}) as reply:
            [item] = (await reply.json())["results"]
            assert reply.status == 200 and item["status"] == 400 and "15 % limit" in item["error"]
        with pytest.raises(VenueRejected, match="over the 15 % limit"):
            await raydium.submit(cid(), "ETH", "USDT", "buy", 1e20, 1e300)
        assert len(sims["raydium"].ledger) == len(sims["meteora"].ledger) == 0
        quote = await raydium.quote("ETH", "USDT", "sell", 0.5)  # then the Postman "Different Token Pair"
        order = cid()
        await raydium.submit(order, "ETH", "USDT", "sell", 0.5, quote.price * 0.98)
        assert (await sims["raydium"].wait_settled(order)).state == "confirmed"
