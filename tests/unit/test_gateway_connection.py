"""A connection's send queue with a fake socket: order, bursts within the grace, slow clients closed with
1013 (and a resumable reason), the hard caps in frames and in bytes, flow control of the client's own
messages, the close; and the turns of its look-ups."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from services.gateway.connection import Connection, Lookups


class FakeSocket:
    """Records what is sent; `gate` closed means the client stopped reading (send blocks)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def send(self, message: dict[str, Any]) -> None:
        await self.gate.wait()
        self.sent.append(message)

    @property
    def texts(self) -> list[str]:
        return [m["text"] for m in self.sent if m["type"] == "websocket.send"]

    @property
    def close(self) -> dict[str, Any] | None:
        return next((m for m in self.sent if m["type"] == "websocket.close"), None)


def connection(
    ws: FakeSocket,
    max_frames: int = 10,
    grace_s: float = 0.05,
    multiplexed: bool = False,
    max_bytes: int = 1 << 20,
    max_lookups: int = 100,
    close_timeout_s: float = 5.0,
) -> Connection:
    return Connection(
        ws,  # type: ignore[arg-type]
        max_frames,
        close_timeout_s=close_timeout_s,
        multiplexed=multiplexed,
        grace_s=grace_s,
        max_bytes=max_bytes,
        max_lookups=max_lookups,
    )


async def until(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)


async def test_frames_go_out_in_order_then_the_close() -> None:
    ws = FakeSocket()
    conn = connection(ws)
    writer = conn.start()
    for i in range(5):
        assert conn.push(f"f{i}", seq=i + 1)
    conn.close(1000, "order confirmed at seq 5: stream complete")
    await asyncio.wait_for(writer, 5)
    assert ws.texts == [f"f{i}" for i in range(5)]
    assert ws.close == {
        "type": "websocket.close",
        "code": 1000,
        "reason": "order confirmed at seq 5: stream complete",
    }
    assert conn.last_seq_sent == 5 and not conn.push("late")


async def test_a_burst_over_the_limit_is_fine_if_it_drains_within_the_grace() -> None:
    ws = FakeSocket()
    conn = connection(ws, max_frames=10, grace_s=0.5)
    writer = conn.start()
    assert all(conn.push(f"f{i}") for i in range(30))  # 3x the limit, under the 4x cap
    await until(lambda: len(ws.texts) == 30)
    assert not conn.closing and not conn.overflowed
    await conn.stop()
    assert writer.done()


async def test_a_client_that_stops_reading_is_closed_1013_with_a_resumable_reason() -> None:
    ws = FakeSocket()
    conn = connection(ws, max_frames=10, grace_s=0.05)
    writer = conn.start()
    conn.push("f1", seq=1)
    await until(lambda: ws.texts == ["f1"])
    ws.gate.clear()  # the client stops reading
    for seq in range(2, 14):
        conn.push(f"f{seq}", seq=seq)
    await until(lambda: conn.closing)
    assert conn.overflowed
    assert not conn.push("more")  # nothing more is queued once closing
    ws.gate.set()  # the client reads again: the frame in flight, then the close
    await asyncio.wait_for(writer, 5)
    assert ws.texts == ["f1", "f2"]
    assert ws.close is not None and ws.close["code"] == 1013
    assert "fromSeq=2" in ws.close["reason"]  # the last seq that went out


async def test_the_hard_cap_closes_at_once() -> None:
    ws = FakeSocket()
    ws.gate.clear()
    conn = connection(ws, max_frames=10, grace_s=60.0, multiplexed=True)
    conn.start()
    results = [conn.push(f"f{i}") for i in range(40)]
    assert results[-1] is False and conn.closing and conn.overflowed
    assert "fromSeq=<last seq received>" in conn.close_reason  # multiplexed: one seq per order
    await conn.stop()


async def test_room_is_clear_while_over_half_the_limit() -> None:
    ws = FakeSocket()
    ws.gate.clear()
    conn = connection(ws, max_frames=10)
    conn.start()
    for i in range(4):
        conn.push(f"f{i}")
    assert conn.room.is_set()
    conn.push("f4")
    assert not conn.room.is_set()
    ws.gate.set()
    await asyncio.wait_for(conn.room.wait(), 5)
    await conn.stop()


async def test_a_close_the_client_never_reads_is_given_up() -> None:
    ws = FakeSocket()
    ws.gate.clear()
    conn = Connection(ws, 10, close_timeout_s=0.05, multiplexed=False)  # type: ignore[arg-type]
    writer = conn.start()
    conn.push("stuck")
    conn.close(1000, "done")
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(writer, 5)
    assert ws.sent == []


async def test_big_frames_are_bounded_in_bytes_not_only_in_frames() -> None:
    ws = FakeSocket()
    ws.gate.clear()
    conn = connection(ws, max_frames=1000, max_bytes=10_000, grace_s=60.0, multiplexed=True)
    conn.start()
    assert conn.push("x" * 4000) and conn.room.is_set()
    assert conn.push("x" * 2000) and not conn.room.is_set()  # over half the bytes: the client's next waits
    assert conn.push("x" * 5000) and not conn.closing  # over the limit: the grace runs
    results = [conn.push("x" * 10_000) for _ in range(3)]
    assert results == [True, True, False] and conn.closing and conn.overflowed  # 4x the bytes: at once
    await conn.stop()


async def test_over_the_byte_limit_past_the_grace_is_closed_1013() -> None:
    ws = FakeSocket()
    conn = connection(ws, max_frames=1000, max_bytes=10_000, grace_s=0.05)
    writer = conn.start()
    conn.push("a", seq=1)
    await until(lambda: ws.texts == ["a"])
    ws.gate.clear()
    for seq, letter in ((2, "b"), (3, "c"), (4, "d")):  # b goes in flight; c and d stay queued
        conn.push(letter * 6000, seq=seq)
    await until(lambda: conn.closing)
    ws.gate.set()
    await asyncio.wait_for(writer, 5)
    assert ws.close is not None and ws.close["code"] == 1013 and "fromSeq=2" in ws.close["reason"]


def test_look_ups_take_turns_in_order_and_a_withdrawn_one_never_runs() -> None:
    lookups = Lookups(limit=2)
    ran: list[str] = []

    def turn(name: str) -> Callable[[], None]:
        return lambda: ran.append(name)

    turns = {name: turn(name) for name in "abcde"}
    for name in "abcde":
        lookups.ask(turns[name])
    assert ran == ["a", "b"] and lookups.running == 2 and lookups.waiting == 3
    lookups.withdraw(turns["c"])  # its stream ended before its turn
    lookups.withdraw(turns["a"])  # under way already: nothing to withdraw (its stream calls done)
    lookups.done()
    assert ran == ["a", "b", "d"] and lookups.running == 2 and lookups.waiting == 1
    lookups.done()
    lookups.done()
    assert ran == ["a", "b", "d", "e"] and lookups.running == 1 and lookups.waiting == 0
    lookups.done()
    assert lookups.running == 0
