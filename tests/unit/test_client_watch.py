"""The client's watch against a small WebSocket server of the test's own: it resumes with fromSeq after a
resumable close (each seq once, in order), stops after 1000, and gives up on a close it cannot resume."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from services.client import AsyncClient, StreamFailed

ORDER = "0b6f3e9a-2d1c-4f7e-9a53-8c1d2e4f5a6b"
STATUSES = ["pending", "routing", "building", "submitted", "confirmed"]


def frame(seq: int) -> bytes:
    return orjson.dumps(
        {"orderId": ORDER, "seq": seq, "type": "X", "status": STATUSES[seq - 1], "ts": seq,
         "occurredAt": "2025-01-01T00:00:00.000Z", "data": {}, "extra": "ignored"}
    )  # fmt: skip


class Server:
    """Sends frames fromSeq+1.. and closes with the next planned code (1000 once it sent seq 5)."""

    def __init__(self, closes: list[tuple[int, int]]) -> None:
        self.closes = closes  # (after this many frames, close code)
        self.asked: list[str] = []

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.asked.append(ws.request.path)
        start = int(ws.request.path.split("fromSeq=")[1].split("&")[0])
        count, code = self.closes.pop(0) if self.closes else (5, 1000)
        seq = start
        for _ in range(count):
            if seq >= 5:
                break
            seq += 1
            await ws.send(frame(seq).decode())
        # Resend an old frame after a resume: the client must not yield it twice.
        if start > 0 and code != 1000:
            await ws.send(frame(start).decode())
        await ws.close(code if seq < 5 else 1000, "planned")


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    plan = Server([(2, 1012), (1, 1013)])
    async with serve(plan.handler, "127.0.0.1", 0) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        yield plan, f"http://127.0.0.1:{port}"


async def test_watch_resumes_after_resumable_closes_without_gap_or_duplicate(
    server: tuple[Server, str],
) -> None:
    plan, url = server
    async with AsyncClient(url, api_key="", max_resumes=3) as api:
        seqs = [f.seq async for f in api.watch(ORDER)]
    assert seqs == [1, 2, 3, 4, 5]
    assert [p.split("?")[1] for p in plan.asked] == ["fromSeq=0", "fromSeq=2", "fromSeq=3"]


async def test_watch_from_a_seq_gets_only_what_follows(server: tuple[Server, str]) -> None:
    plan, url = server
    plan.closes = []
    async with AsyncClient(url, api_key="") as api:
        frames = [f async for f in api.watch(ORDER, from_seq=3)]
    assert [f.seq for f in frames] == [4, 5] and frames[-1].terminal


async def test_a_close_that_cannot_be_resumed_is_an_error() -> None:
    async def refuse(ws: ServerConnection) -> None:
        await ws.close(4404, "order not found: no event within 30 s")

    async with serve(refuse, "127.0.0.1", 0) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        async with AsyncClient(f"http://127.0.0.1:{port}", api_key="") as api:
            with pytest.raises(StreamFailed) as failed:
                async for _ in api.watch(ORDER):
                    pass
    assert failed.value.code == 4404 and "not found" in str(failed.value)


async def test_resumes_are_bounded() -> None:
    async def flaky(ws: ServerConnection) -> None:
        await ws.close(1013, "too slow")

    async with serve(flaky, "127.0.0.1", 0) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        async with AsyncClient(f"http://127.0.0.1:{port}", api_key="", max_resumes=2) as api:
            with pytest.raises(StreamFailed, match="1013"):
                await asyncio.wait_for(anext(api.watch(ORDER)), 30)
