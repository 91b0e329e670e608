"""`oee venue` as a process, SIGKILLed between accepting a swap and settling it, and again after: the swap
settles exactly once, the pool keeps its effect exactly once, and the client-order-id registry survives.
Also: the process refuses to listen beyond loopback without a secret, and never logs the secret."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from services.venue.client import HttpVenue
from services.venue.interface import SubmitConflict, SwapStatus, VenueRejected
from tests.e2e.harness import Proc, free_port, stop_all, wait_http

pytestmark = pytest.mark.e2e
BIG_SELL = ("SOL", "USDC", "sell", 2_000.0, 1.0)  # moves Raydium's SOL/USDC price by ~14 %


def venue_process(tmp: Path, **env: str) -> Proc:
    full = dict(os.environ, OEE_STATE_DIR=str(tmp / "state"), PYTHONUNBUFFERED="1", **env)
    argv = [sys.executable, "-m", "services.cli", "venue"]
    return Proc("venue", argv, full, tmp / f"venue-{uuid.uuid4().hex[:6]}.log")


async def wait_state(
    venue: HttpVenue, order: str, state: str, proc: Proc, timeout: float = 60.0
) -> SwapStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await venue.status(order)
        if status.state == state:
            return status
        assert proc.alive(), proc.tail()
        await asyncio.sleep(0.05)  # the polling interval of a wait with a deadline
    raise AssertionError(f"{order} never reached {state} within {timeout} s:\n{proc.tail()}")


async def ledger(url: str, secret: str) -> dict:  # type: ignore[type-arg]
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {secret}"}) as http:
        reply = await http.get(f"{url}/venues/raydium/ledger?detail=1", timeout=10)
        assert reply.status_code == 200, reply.text
        return dict(reply.json())


async def test_a_settlement_is_applied_once_across_sigkills(tmp_path: Path) -> None:
    port, secret = free_port(), secrets.token_urlsafe(32)
    url = f"http://127.0.0.1:{port}"
    env = {
        "VENUE_PORT": str(port),
        "VENUE_SEED": "7",
        "VENUE_SECRET": secret,
        "VENUE_LEDGER_PATH": str(tmp_path / "venue" / "ledger.jsonl"),
        "VENUE_EXEC_LATENCY_MS": "600000",  # an accepted swap waits ten minutes: the kill comes first
        "LOG_LEVEL": "DEBUG",
    }
    procs: list[Proc] = []

    async def start() -> Proc:
        proc = venue_process(tmp_path, **env).start()
        procs.append(proc)
        await wait_http(f"{url}/health", proc)
        return proc

    try:
        first = await start()
        order = f"order-{uuid.uuid4()}"
        async with HttpVenue("raydium", url, secret=secret) as raydium:
            reference = await raydium.quote("SOL", "USDC", "sell", 1.0)
            receipt = await raydium.submit(order, *BIG_SELL)
            assert (await raydium.status(order)).state == "pending"
        first.kill(signal.SIGKILL)  # between the acceptance and the settlement

        second = await start()  # replays the journal and settles the pending swap at once
        async with HttpVenue("raydium", url, secret=secret) as raydium:
            settled = await wait_state(raydium, order, "confirmed", second)
            assert settled.tx_hash == receipt.tx_hash
            moved = await raydium.quote("SOL", "USDC", "sell", 1.0)
            assert moved.price < reference.price * 0.9
        swap = (await ledger(url, secret))["swaps"][order]
        assert (swap["settlements"], swap["executions"]) == (1, 1)
        second.kill(signal.SIGKILL)  # after the settlement

        third = await start()
        async with (
            HttpVenue("raydium", url, secret=secret) as raydium,
            HttpVenue("meteora", url, secret=secret) as meteora,
        ):
            assert await raydium.status(order) == settled  # same outcome, same settled_at: not settled again
            book = await ledger(url, secret)
            assert (book["pending"], book["swaps"][order]["settlements"]) == (0, 1)
            # The pool kept the swap's effect once: drifting back a little over the restarts (~1 % per
            # 3 s at this distance), never pushed down a second time (that would be another ~14 %).
            again = await raydium.quote("SOL", "USDC", "sell", 1.0)
            assert moved.price * 0.97 < again.price < reference.price * 0.9
            with pytest.raises(SubmitConflict, match="taken by a swap on raydium"):  # registry rebuilt
                await meteora.submit(order, *BIG_SELL)
            assert await raydium.submit(order, *BIG_SELL) == receipt
        third.stop()
        for proc in procs:
            log = proc.log.read_text(errors="replace")
            assert secret not in log, f"{proc.log} contains the venue secret"
    finally:
        stop_all(procs)


async def test_a_huge_buy_is_refused_and_a_journal_that_drained_a_pool_does_not_break_the_pair(
    tmp_path: Path,
) -> None:
    """The new-user review's case: 1e20, 1e60 and 1e150 USDT buys of ETH drained the pool, every tick logged
    a math domain error, ETH/USDT answered 500 for good, and a restart replayed into the same state."""
    port, secret = free_port(), secrets.token_urlsafe(32)
    url = f"http://127.0.0.1:{port}"
    journal = tmp_path / "venue" / "ledger-raydium.jsonl"
    env = {
        "VENUE_PORT": str(port),
        "VENUE_SEED": "5",
        "VENUE_SECRET": secret,
        "VENUE_LEDGER_PATH": str(tmp_path / "venue" / "ledger.jsonl"),
        "VENUE_EXEC_LATENCY_MS": "50",
        "VENUE_TICK_MS": "50",  # the walk steps every pool often: a broken one would fail it at once
    }
    procs: list[Proc] = []

    async def start() -> Proc:
        proc = venue_process(tmp_path, **env).start()
        procs.append(proc)
        await wait_http(f"{url}/health", proc)
        return proc

    async def different_token_pair(raydium: HttpVenue, proc: Proc) -> None:
        """The Postman collection's order: sell 0.5 ETH for USDT, 200 bps of slippage."""
        quote = await raydium.quote("ETH", "USDT", "sell", 0.5)
        assert quote.price == pytest.approx(3000, rel=0.02)
        order = f"order-{uuid.uuid4()}"
        await raydium.submit(order, "ETH", "USDT", "sell", 0.5, quote.price * 0.98)
        confirmed = await wait_state(raydium, order, "confirmed", proc)
        assert confirmed.executed_price == pytest.approx(quote.price, rel=0.02)

    try:
        first = await start()
        async with HttpVenue("raydium", url, secret=secret) as raydium:
            for amount in (1e20, 1e60, 1e150):
                with pytest.raises(VenueRejected, match="over the 15 % limit"):
                    await raydium.quote("ETH", "USDT", "buy", amount)
                with pytest.raises(VenueRejected, match="over the 15 % limit"):
                    await raydium.submit(f"order-{uuid.uuid4()}", "ETH", "USDT", "buy", amount, 1e300)
            await different_token_pair(raydium, first)
        first.kill(signal.SIGKILL)

        # Make the journal what the venue wrote before the bounds: its last ETH/USDT swap left no ETH.
        lines = [orjson.loads(line) for line in journal.read_bytes().splitlines()]
        settle = next(line for line in lines if line["op"] == "settle" and line.get("pool"))
        settle["pool"] |= {"reserve_a": 0.0, "reserve_b": 1e150}
        journal.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))

        second = await start()
        async with HttpVenue("raydium", url, secret=secret) as raydium:
            await different_token_pair(raydium, second)
            await different_token_pair(raydium, second)  # again, from where the first one left the pool
        second.stop()
        log = second.log.read_text(errors="replace")
        assert "ETH/USDT state (0.0, 1e+150) cannot be priced: not restored" in log
        assert "math domain error" not in log and "Traceback" not in log, second.tail()
    finally:
        stop_all(procs)


@pytest.mark.parametrize("module", ["services.cli venue", "services.venue.server"])
def test_the_venue_refuses_to_listen_beyond_loopback_without_a_secret(tmp_path: Path, module: str) -> None:
    env = dict(os.environ, VENUE_HOST="0.0.0.0", VENUE_PORT=str(free_port()), VENUE_SECRET="")
    done = subprocess.run(
        [sys.executable, "-m", *module.split()], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "VENUE_HOST=0.0.0.0" in lines[0] and "VENUE_SECRET is unset" in lines[0], (
        done.stderr
    )
