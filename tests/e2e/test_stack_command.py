"""The local stack as an operator runs it: `oee stack up/down/status` as subprocesses, in a state directory
and on ports of this test's own (so it never touches the stack the rest of the suite uses)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from events.codec import decode, encode, headers_for, key_for
from events.topics import Topics
from tests.samples import lifecycle_events

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")}
    env.update(
        OEE_STATE_DIR=str(tmp_path / "state"),
        OEE_KAFKA_PORT=str(_free_port()),
        OEE_KAFKA_CONTROLLER_PORT=str(_free_port()),
        OEE_PG_PORT=str(_free_port()),
        OEE_PARTITIONS="3",
    )
    yield env
    oee(env, "stack", "down")


def oee(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stdout}\n{result.stderr}"
    return result.stdout


async def _produce(bootstrap: str, topic: str, count_orders: int) -> list[bytes]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    sent = []
    try:
        for _ in range(count_orders):
            for event in lifecycle_events():
                value = encode(event)
                await producer.send_and_wait(topic, value, key=key_for(event), headers=headers_for(event))
                sent.append(value)
    finally:
        await producer.stop()
    return sent


async def _read_all(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", isolation_level="read_committed"
    )
    await consumer.start()
    got: list[bytes] = []
    try:
        async with asyncio.timeout(60):
            while len(got) < expected:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    got.extend(r.value for r in records)
    finally:
        await consumer.stop()
    return got


async def test_events_survive_a_stack_restart(own_stack: dict[str, str]) -> None:
    out = _ok(oee(own_stack, "stack", "up"))
    assert "broker" in out and "database" in out
    bootstrap = f"127.0.0.1:{own_stack['OEE_KAFKA_PORT']}"
    topic = Topics.with_prefix("").events
    sent = await _produce(bootstrap, topic, count_orders=5)

    first_pid = next(line for line in out.splitlines() if line.startswith("broker")).split()[2]
    again = _ok(oee(own_stack, "stack", "up"))  # idempotent: finds the running broker
    assert f"pid {first_pid}" in again
    other = oee(
        own_stack, "stack", "up", "--brokers", "3"
    )  # the node count is fixed when the cluster is made
    assert other.returncode != 0 and len(other.stderr.strip().splitlines()) == 1, other.stderr
    assert "has 1 broker(s), not 3" in other.stderr and "--purge" in other.stderr

    assert "stopped" in _ok(oee(own_stack, "stack", "down"))
    assert "stopped" in _ok(oee(own_stack, "stack", "status")).split("kafka", 1)[1].splitlines()[0]
    _ok(oee(own_stack, "stack", "up"))

    got = await _read_all(bootstrap, topic, len(sent))
    assert sorted(got) == sorted(sent)
    assert [decode(v) for v in got if decode(v).order_id == decode(sent[0]).order_id] == [
        decode(v) for v in sent if decode(v).order_id == decode(sent[0]).order_id
    ], "one order's events come back in the order they were written"


def test_down_purge_removes_the_data(own_stack: dict[str, str]) -> None:
    _ok(oee(own_stack, "stack", "up"))
    state = Path(own_stack["OEE_STATE_DIR"])
    assert (state / "kafka" / "data" / "meta.properties").exists()
    assert (state / "postgres" / "data" / "PG_VERSION").exists()
    _ok(oee(own_stack, "stack", "down", "--purge"))
    assert not (state / "kafka").exists() and not (state / "postgres").exists()


def test_a_taken_port_is_a_one_line_error(own_stack: dict[str, str]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(own_stack["OEE_KAFKA_PORT"])))
        squatter.listen()
        result = oee(own_stack, "stack", "up")
    assert result.returncode != 0
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert own_stack["OEE_KAFKA_PORT"] in message and "OEE_KAFKA_PORT" in message


def _stack_up_fails_in_one_line(env: dict[str, str]) -> str:
    """`oee stack up` with `env`: must exit non-zero with exactly one line on stderr, which is returned."""
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "stack", "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def test_missing_java_is_a_one_line_error(own_stack: dict[str, str], tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    assert "`java` is not on PATH" in _stack_up_fails_in_one_line(dict(own_stack, PATH=str(bare)))


def test_missing_maven_with_no_cached_jars_is_a_one_line_error(
    own_stack: dict[str, str], tmp_path: Path
) -> None:
    java = shutil.which("java")
    assert java is not None, "this test needs java on PATH (the stack does)"
    only_java = tmp_path / "bin"
    only_java.mkdir()
    (only_java / "java").symlink_to(java)
    cache = tmp_path / "empty-cache"
    env = dict(own_stack, PATH=str(only_java), OEE_CACHE_DIR=str(cache))
    assert "`mvn` is not on PATH" in _stack_up_fails_in_one_line(env)
    assert not any(cache.rglob("*.jar")), "nothing half-fetched is left behind"
