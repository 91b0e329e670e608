"""The client's watch against a small WebSocket server of the test's own: it resumes with fromSeq after a
resumable close (each seq once, in order), stops after 1000, and gives up on a close it cannot resume. Once
connected, it waits out an API that restarts (refused, 503) within its bounded reconnects; a first connect
that fails is an error at once."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator
from http import HTTPStatus

import orjson
import pytest
from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from services.client import ApiError, AsyncClient, Frame, StreamFailed, Unreachable
from tests.waiting import until

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


def free_port() -> int:
    """A port nothing listens on (bound and closed again just now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the server going away and coming back: a restart of the API mid-stream -------------------------------------


class Restarting:
    """A server on a fixed port that sends two frames, then dies like `kill -9` (listener closed, connection
    dropped without a close frame) and, when the test says so, comes back on the same port."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.sent_two = asyncio.Event()
        self.conns: list[ServerConnection] = []
        self.port = 0

    async def first(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.asked.append(ws.request.path)
        self.conns.append(ws)
        for seq in (1, 2):
            await ws.send(frame(seq).decode())
        self.sent_two.set()
        await ws.wait_closed()

    async def die(self, srv: WsServer) -> None:
        srv.close(close_connections=False)
        for ws in self.conns:
            ws.transport.abort()
        await srv.wait_closed()


async def collect(frames: AsyncIterator[Frame]) -> list[int]:
    return [f.seq async for f in frames]


async def reconnect_failed(caplog: pytest.LogCaptureFixture, words: str, deadline_s: float = 15.0) -> None:
    """Wait until the client logged a failed reconnect naming `words` (it tried while the server was away)."""
    await until(
        lambda: any(words in r.getMessage() for r in caplog.records if r.name == "services.client"),
        deadline_s,
        f"a failed reconnect with {words!r} logged",
    )


async def test_watch_resumes_after_the_api_restarts_on_the_same_port(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="services.client")
    down = Restarting()
    again = Server([])  # the restarted API: everything after fromSeq, resending the overlapping frame
    srv = await serve(down.first, "127.0.0.1", 0)
    port = next(iter(srv.sockets)).getsockname()[1]
    async with AsyncClient(f"http://127.0.0.1:{port}", api_key="") as api:
        frames = api.watch(ORDER)
        seqs = [(await anext(frames)).seq, (await anext(frames)).seq]
        await down.sent_two.wait()
        await down.die(srv)
        rest = asyncio.create_task(collect(frames))  # the watch reconnects while the API is away
        await reconnect_failed(caplog, "ConnectionRefusedError")  # at least one reconnect found nobody
        async with serve(again.handler, "127.0.0.1", port):
            seqs += await asyncio.wait_for(rest, 30)
    assert seqs == [1, 2, 3, 4, 5]
    assert [p.split("?")[1] for p in again.asked] == ["fromSeq=2"]


async def test_a_503_on_reconnect_is_waited_out(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="services.client")
    rest = Server([])
    handshakes = 0

    def not_ready(conn: ServerConnection, request: Request) -> Response | None:
        nonlocal handshakes
        handshakes += 1
        if handshakes == 2:  # the first reconnect: the API is up but not ready (or full)
            return conn.respond(HTTPStatus.SERVICE_UNAVAILABLE, '{"error": "not ready"}\n')
        return None

    async def handler(ws: ServerConnection) -> None:
        if handshakes == 1:
            for seq in (1, 2):
                await ws.send(frame(seq).decode())
            ws.transport.abort()
            return
        await rest.handler(ws)

    async with serve(handler, "127.0.0.1", 0, process_request=not_ready) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        async with AsyncClient(f"http://127.0.0.1:{port}", api_key="") as api:
            seqs = [f.seq async for f in api.watch(ORDER)]
    assert seqs == [1, 2, 3, 4, 5] and handshakes == 3
    assert [p.split("?")[1] for p in rest.asked] == ["fromSeq=2"]
    assert any("503" in r.getMessage() for r in caplog.records), caplog.text


async def test_the_first_connect_failing_is_an_error_at_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="services.client")
    async with AsyncClient(f"http://127.0.0.1:{free_port()}", api_key="") as api:
        with pytest.raises(Unreachable, match="ConnectionRefusedError"):
            await anext(api.watch(ORDER))

    def full(conn: ServerConnection, request: Request) -> Response:
        return conn.respond(HTTPStatus.SERVICE_UNAVAILABLE, "gateway full\n")

    async with serve(Server([]).handler, "127.0.0.1", 0, process_request=full) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        async with AsyncClient(f"http://127.0.0.1:{port}", api_key="") as api:
            with pytest.raises(ApiError) as refused:
                await anext(api.watch(ORDER))
    assert refused.value.status == 503
    assert not [r for r in caplog.records if r.name == "services.client"], (
        "no reconnect after a first failure"
    )


async def test_reconnects_to_an_api_that_stays_away_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="services.client")
    down = Restarting()
    srv = await serve(down.first, "127.0.0.1", 0)
    port = next(iter(srv.sockets)).getsockname()[1]
    async with AsyncClient(f"http://127.0.0.1:{port}", api_key="", max_resumes=2) as api:
        frames = api.watch(ORDER)
        seqs = [(await anext(frames)).seq, (await anext(frames)).seq]
        await down.sent_two.wait()
        await down.die(srv)
        with pytest.raises(Unreachable) as gave_up:
            await asyncio.wait_for(anext(frames), 30)
    assert seqs == [1, 2]
    assert "ConnectionRefusedError" in str(gave_up.value) and "after seq 2 (2 reconnects failed)" in str(
        gave_up.value
    )
    tries = [r for r in caplog.records if r.name == "services.client"]
    assert len(tries) == 2, caplog.text  # the drop, then one failed reconnect; the second failure gives up


async def test_oee_order_watch_rides_out_an_api_restart() -> None:
    """The user's report: `oee order watch ID` exited 1 when the API restarted though the order confirmed."""
    down = Restarting()
    again = Server([])
    srv = await serve(down.first, "127.0.0.1", 0)
    port = next(iter(srv.sockets)).getsockname()[1]
    env = dict(os.environ, OEE_API_KEY="", LOG_LEVEL="")
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "order", "--url", f"http://127.0.0.1:{port}", "watch", ORDER,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert cli.stdout is not None and cli.stderr is not None
    try:
        shown = [await asyncio.wait_for(cli.stdout.readline(), 30) for _ in range(2)]
        await down.die(srv)
        said = [await asyncio.wait_for(cli.stderr.readline(), 30) for _ in range(2)]
        assert b"connection lost at seq 2" in said[0] and b"attempt 1 of 5" in said[0], said
        assert b"ConnectionRefusedError" in said[1] and b"attempt 2 of 5" in said[1], said  # found nobody
        async with serve(again.handler, "127.0.0.1", port):
            out, err = await asyncio.wait_for(cli.communicate(), 30)
    finally:
        if cli.returncode is None:
            cli.kill()
            await cli.wait()
    lines = [line.decode() for line in shown] + out.decode().splitlines()
    assert cli.returncode == 0, err
    assert [line.split()[0] for line in lines] == ["#1", "#2", "#3", "#4", "#5"] and "confirmed" in lines[-1]
