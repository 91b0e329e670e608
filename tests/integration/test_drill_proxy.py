"""The drill's reply-dropping proxy: requests always reach the server, replies are lost while it drops, and a
connection that lost a reply is closed when the drop ends (its framing is broken); new ones work again."""

from __future__ import annotations

import asyncio

from services.drill.proxy import ReplyDropper


async def test_requests_arrive_replies_are_lost_and_broken_connections_are_cut() -> None:
    received: list[bytes] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            received.append(line)
            writer.write(b"ok " + line)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    proxy = await ReplyDropper("127.0.0.1", server.sockets[0].getsockname()[1]).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"one\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"ok one\n"

        proxy.drop()
        writer.write(b"two\n")
        async with asyncio.timeout(5):
            while len(received) < 2:
                await asyncio.sleep(0.01)
        assert received == [b"one\n", b"two\n"], "the request reached the server"
        assert not await _reply_within(reader, 0.5), "its reply was lost"
        assert proxy.dropped_replies >= 1

        assert proxy.heal() == 1, "the connection that lost a reply is cut"
        assert await asyncio.wait_for(reader.read(), 5) == b"", "the client sees it closed"
        writer.close()

        again_reader, again = await asyncio.open_connection("127.0.0.1", proxy.port)
        again.write(b"three\n")
        assert await asyncio.wait_for(again_reader.readline(), 5) == b"ok three\n"
        again.close()
    finally:
        await proxy.aclose()
        server.close()
        await server.wait_closed()


async def test_a_server_that_is_down_resets_the_client() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    proxy = await ReplyDropper("127.0.0.1", port).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"anyone?\n")
        try:
            assert await asyncio.wait_for(reader.read(), 5) == b""
        except ConnectionResetError:
            pass  # a reset is what it should be; an orderly EOF is as good for the client
        writer.close()
    finally:
        await proxy.aclose()


async def _reply_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    try:
        return await asyncio.wait_for(reader.readline(), seconds)
    except TimeoutError:
        return b""
