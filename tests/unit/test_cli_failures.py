"""One line for every failure of a command: which dependency, where (no password), the library's words."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from aiokafka.errors import KafkaConnectionError

from services import config
from services.cli import main, version
from services.failures import one_line, place, where_database


@pytest.fixture
def settings() -> config.Settings:
    s = config.load({})
    return dataclasses.replace(
        s, bootstrap_servers="10.0.0.9:9092", database_url="postgresql://oee:hunter2@db.example:5433/oee"
    )


def test_a_broker_failure_names_the_broker(settings: config.Settings) -> None:
    line = one_line(KafkaConnectionError("Unable to bootstrap"), settings)
    assert line == "the broker at 10.0.0.9:9092 did not answer (KafkaConnectionError: Unable to bootstrap)"


def test_a_database_failure_names_the_database_without_its_password(settings: config.Settings) -> None:
    async def connect() -> None:
        import asyncpg

        await asyncpg.connect("postgresql://oee:hunter2@127.0.0.1:1/oee", timeout=5)

    with pytest.raises(OSError) as caught:
        asyncio.run(connect())
    assert place(caught.value) == "database"
    line = one_line(caught.value, settings)
    assert line.startswith("the database at db.example:5433/oee did not answer (")
    assert "hunter2" not in line and "\n" not in line


def test_where_database_never_shows_credentials() -> None:
    assert where_database("postgresql://u:p@h:1/d") == "h:1/d"
    assert where_database("postgresql://h/d") == "h/d"


def test_a_bug_is_one_line_too(settings: config.Settings) -> None:
    line = one_line(KeyError("x\ny"), settings)
    assert "\n" not in line and line.startswith("unexpected KeyError") and "LOG_LEVEL=debug" in line


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == version() and out.startswith("oee ")


@pytest.mark.parametrize("level", ["loud", "INFO2", "trace"])
def test_log_level_is_validated(level: str) -> None:
    with pytest.raises(config.ConfigError, match="LOG_LEVEL"):
        config.load({"LOG_LEVEL": level})


@pytest.mark.parametrize("level", ["debug", "INFO", " warning ", "error"])
def test_log_levels_that_exist_are_accepted(level: str) -> None:
    assert config.load({"LOG_LEVEL": level}).log_level == level.strip().upper()


def test_access_log_switch() -> None:
    assert config.load({}).access_log is True
    assert config.load({"ACCESS_LOG": "off"}).access_log is False
    with pytest.raises(config.ConfigError, match="ACCESS_LOG"):
        config.load({"ACCESS_LOG": "maybe"})
