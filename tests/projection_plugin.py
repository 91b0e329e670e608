"""Fixtures of the projection tests: a Postgres schema of the test's own, and a connection.

Loaded with `pytest_plugins = ["tests.projection_plugin"]`; the helpers are in `tests.projection_fixtures`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from projections import migrations
from services.config import Settings


@pytest.fixture
async def schema(infra: Settings, unique: str) -> AsyncIterator[str]:
    """A Postgres schema of this test's own, migrated, dropped afterwards."""
    name = f"t_{unique}"
    conn = await asyncpg.connect(infra.database_url)
    try:
        await migrations.apply(conn, name)
        yield name
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def db(infra: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(infra.database_url)
    try:
        yield conn
    finally:
        await conn.close()
