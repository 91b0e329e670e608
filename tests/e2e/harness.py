"""Run the system's processes as a user does (`python -m services.cli <service>`) and read what they wrote.

Each process logs to a file in the test's tmp dir; a failed wait shows the tail of every log.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from events.codec import decode, encode, headers_for, key_for
from events.envelope import Event
from events.topics import Topics
from services.config import Settings
from tests.samples import order_request as order_request  # re-exported: tests build requests with it

TERMINAL = ("OrderConfirmed", "OrderFailed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    """One of our services as a subprocess."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            assert self.popen is not None
            self.popen.send_signal(sig)
            self.popen.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM, then wait for the exit (SIGKILL after 20 s)."""
        stop_all([self])

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def stop_all(procs: Iterable[Proc]) -> None:
    """Stop the processes gracefully, all at once: SIGTERM to each, then wait for each (SIGKILL after 20 s).
    A teardown takes the slowest stop, not the sum of them."""
    running = [proc.popen for proc in procs if proc.popen is not None and proc.alive()]
    for popen in running:
        popen.terminate()
    for popen in running:
        try:
            popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=10)


def service(name: str, settings: Settings, tmp: Path, extra_env: dict[str, str] | None = None) -> Proc:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        DATABASE_URL=settings.database_url,
        OEE_TOPIC_PREFIX=settings.topic_prefix,
        OEE_STATE_DIR=str(tmp / "state"),
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra_env or {})
    argv = [sys.executable, "-m", "services.cli", name]
    return Proc(name, argv, env, tmp / f"{name}-{uuid.uuid4().hex[:6]}.log")


async def wait_http(url: str, proc: Proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise AssertionError(f"{proc.name} exited:\n{proc.tail()}")
            try:
                if (await client.get(url, timeout=1.0)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{proc.name} not ready at {url} within {timeout} s:\n{proc.tail()}")


async def wait_log(proc: Proc, needle: str, count: int = 1, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise AssertionError(f"{proc.name} exited:\n{proc.tail()}")
        try:
            if proc.log.read_text(errors="replace").count(needle) >= count:
                return
        except FileNotFoundError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{proc.name} never logged {needle!r} x{count}:\n{proc.tail()}")


async def produce(bootstrap: str, topic: str, events: Iterable[Event | bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2)
    await producer.start()
    try:
        futures = []
        for item in events:
            if isinstance(item, bytes):
                futures.append(await producer.send(topic, item, key=b"poison"))
            else:
                futures.append(
                    await producer.send(topic, encode(item), key=key_for(item), headers=headers_for(item))
                )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


@dataclass
class LogReader:
    """Reads the order event log (read_committed) from the beginning, grouping events by order."""

    bootstrap: str
    topic: str
    by_order: dict[str, list[Event]] = field(default_factory=lambda: defaultdict(list))
    raw_count: int = 0
    _consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> LogReader:
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            enable_auto_commit=False,
        )
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._consumer is not None
        await self._consumer.stop()

    async def poll(self) -> None:
        assert self._consumer is not None
        for records in (await self._consumer.getmany(timeout_ms=200)).values():
            for record in records:
                self.raw_count += 1
                event = decode(record.value)
                self.by_order[event.order_id].append(event)

    def terminal(self, order_id: str) -> list[Event]:
        return [e for e in self.by_order.get(order_id, []) if e.type in TERMINAL]

    async def wait_for(self, predicate, timeout: float, what: str, procs: Iterable[Proc] = ()) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.name}\n{p.tail()}" for p in procs)
                raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{logs}")
            await self.poll()

    async def wait_terminal(
        self, order_ids: Iterable[str], timeout: float, procs: Iterable[Proc] = ()
    ) -> None:
        ids = list(order_ids)

        def done(reader: LogReader) -> bool:
            return all(reader.terminal(i) for i in ids)

        await self.wait_for(done, timeout, f"terminal events of {len(ids)} orders", procs)

    async def settle(self, quiet_s: float = 1.0) -> None:
        """Keep reading until nothing new arrives for `quiet_s` (to catch duplicates written late)."""
        last, since = self.raw_count, time.monotonic()
        while time.monotonic() - since < quiet_s:
            await self.poll()
            if self.raw_count != last:
                last, since = self.raw_count, time.monotonic()


def assert_lifecycle(events: list[Event]) -> None:
    """Exactly one terminal event, seq 1..n without gap or duplicate, each caused by the one before."""
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, len(events) + 1)), f"seq not gap-free: {seqs}"
    assert [e.type for e in events if e.type in TERMINAL].__len__() == 1, [e.type for e in events]
    assert events[-1].type in TERMINAL
    for before, after in itertools.pairwise(events):
        assert after.causation_id == before.event_id


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The offsets consumer group `group` has committed on `topic`, by partition (none: absent)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: m.offset for tp, m in offsets.items() if tp.topic == topic and m.offset >= 0}


def topics_of(settings: Settings) -> Topics:
    return Topics.with_prefix(settings.topic_prefix)
