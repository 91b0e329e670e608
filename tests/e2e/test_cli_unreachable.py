"""Every command of `oee` that needs the broker, the database or the API, run as a user runs it with all three
unreachable: one line on stderr naming what did not answer, a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import free_port

pytestmark = pytest.mark.e2e

ORDER = "0b6f3e9a-2d1c-4f7e-9a53-8c1d2e4f5a6b"
COMMANDS: dict[str, tuple[list[str], str]] = {
    "topics create": (["topics", "create"], "broker"),
    "migrate": (["migrate"], "database"),
    "tail": (["tail", "--from-beginning"], "broker"),
    "lag": (["lag"], "API"),
    "lag --direct": (["lag", "--direct"], "broker"),
    "accounts list": (["accounts", "list"], "database"),
    "accounts create": (["accounts", "create", "someone"], "database"),
    "rebuild": (["rebuild", "--dry-run"], "database"),
    "deadletters list": (["deadletters", "list"], "database"),
    "deadletters show": (["deadletters", "show", "router/0/0"], "database"),
    "deadletters replay": (["deadletters", "replay", "projector/0/0"], "database"),
    "order place": (["order", "place", "sell", "1", "SOL", "USDC"], "API"),
    "order get": (["order", "get", ORDER], "API"),
    "order list": (["order", "list"], "API"),
    "order watch": (["order", "watch", ORDER], "API"),
    "order cancel": (["order", "cancel", ORDER], "API"),
}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def down_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Ports nothing listens on (bound and closed again just now) for the broker, the database and the API."""
    kafka, pg, api = free_port(), free_port(), free_port()
    return dict(
        os.environ,
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{kafka}",
        DATABASE_URL=f"postgresql://oee:s3cret-pw@127.0.0.1:{pg}/oee",
        PORT=str(api),
        OEE_STATE_DIR=str(Path(tmp_path_factory.mktemp("state"))),
        OEE_API_KEY="",
    )


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_command_whose_dependency_is_down_fails_in_one_line(name: str, down_env: dict[str, str]) -> None:
    args, what = COMMANDS[name]
    result = run(args, down_env)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, (name, result.stdout, result.stderr)
    assert len(lines) == 1, (name, result.stderr)
    assert lines[0].startswith(f"oee {args[0]}: "), lines[0]
    assert f"the {what} at " in lines[0] and "did not answer" in lines[0], lines[0]
    assert "did not answer ()" not in lines[0] and ": )" not in lines[0], lines[0]  # always a reason
    assert "Traceback" not in result.stderr and "s3cret-pw" not in result.stderr
    assert result.stdout == "", (name, result.stdout)


def test_a_bad_log_level_is_one_line(down_env: dict[str, str]) -> None:
    for command in (["api"], ["router"], ["projector"], ["migrate"]):
        result = run(command, dict(down_env, LOG_LEVEL="loud"))
        assert result.returncode == 1 and result.stderr.strip().count("\n") == 0, (command, result.stderr)
        assert "LOG_LEVEL='loud' must be one of debug, info, warning, error" in result.stderr


def test_version(down_env: dict[str, str]) -> None:
    result = run(["--version"], down_env)
    assert result.returncode == 0 and result.stdout.startswith("oee ") and result.stderr == ""


def test_a_reader_that_closes_the_pipe_is_no_failure(down_env: dict[str, str]) -> None:
    """`oee order get ID | head -1`: the reader goes away before the output is written; every command exits
    quietly then (handled once, in the CLI's entry). `status` stands for them: it prints and needs nothing."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        result = subprocess.run(
            [sys.executable, "-m", "services.cli", "status"],
            env=down_env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert result.stderr == "" and result.returncode == 141, result.stderr
