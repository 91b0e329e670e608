"""The supervisor with real child processes (small Python programs), no broker needed: output through the
pipe into rotated files, a crash loop reported loudly, a stubborn child killed after the stop timeout, a
watched detached process restarted unless it was stopped on purpose."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from services.stack.procs import Managed, pid_alive
from services.stack.restarts import RestartPolicy
from services.stack.supervisor import SUPERVISOR, InfraSpec, ServiceSpec, Supervisor, read_snapshot
from tests.waiting import until

pytestmark = pytest.mark.integration

FAST = RestartPolicy(backoff_min_s=0.05, backoff_max_s=0.2, healthy_s=60, loop_restarts=3, loop_window_s=60)


def child(name: str, script: str) -> ServiceSpec:
    return ServiceSpec(name, (sys.executable, "-c", script), dict(os.environ, PYTHONUNBUFFERED="1"))


@asynccontextmanager
async def supervising(
    tmp_path: Path,
    services: list[ServiceSpec],
    infra: list[InfraSpec] | None = None,
    policy: RestartPolicy = FAST,
    **kwargs: Any,
) -> AsyncIterator[Supervisor]:
    Managed(SUPERVISOR, tmp_path).record(os.getpid())  # so read_snapshot trusts this process's snapshot
    supervisor = Supervisor(
        services, infra or [], policy, tmp_path, snapshot_file=tmp_path / "run" / "supervisor.json", **kwargs
    )
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.run(stop))
    await until(lambda: read_snapshot(tmp_path) is not None, 10, "the first snapshot")
    try:
        yield supervisor
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def component(tmp_path: Path, name: str) -> dict[str, Any]:
    snapshot = read_snapshot(tmp_path)
    assert snapshot is not None
    return next(c for c in snapshot["components"] if c["name"] == name)


def component_list(tmp_path: Path) -> list[dict[str, Any]]:
    return list(json.loads((tmp_path / "run" / "supervisor.json").read_text())["components"])


async def test_a_chatty_child_writes_through_the_pipe_into_bounded_rotated_files(tmp_path: Path) -> None:
    lines = [f"line {i:05d} {'x' * 50}\n" for i in range(3000)]  # ~186 KB: eleven files' worth
    script = (
        "import sys, time\n"
        "for i in range(3000): sys.stdout.write(f'line {i:05d} ' + 'x' * 50 + '\\n')\n"
        "sys.stdout.flush(); time.sleep(600)\n"
    )
    log = tmp_path / "logs" / "chatty.log"
    async with supervising(tmp_path, [child("chatty", script)], log_max_bytes=16384, log_backups=3):
        await until(lambda: log.exists() and "line 02999" in log.read_text(), 30, "the last line in the log")
    files = sorted(p.name for p in log.parent.iterdir())
    assert files == ["chatty.log", "chatty.log.1", "chatty.log.2", "chatty.log.3"]
    assert all(p.stat().st_size <= 16384 for p in log.parent.iterdir())
    kept = "".join(
        (log.parent / f).read_text() for f in ("chatty.log.3", "chatty.log.2", "chatty.log.1", "chatty.log")
    )
    body = [line + "\n" for line in kept.splitlines() if line.startswith("line ")]
    assert body == lines[-len(body) :], "the newest lines, whole and in order"
    assert len(body) * 62 > 3 * 16384 * 0.9, "the three backups and the current file are (nearly) full"


async def test_a_child_that_exits_at_once_is_reported_as_crash_looping(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    script = "import sys; print('config error: BROKEN_SETTING must be set'); sys.exit(3)"
    with caplog.at_level(logging.WARNING, logger="oee.supervisor"):
        async with supervising(tmp_path, [child("broken", script)], log_max_bytes=1 << 20, log_backups=1):
            await until(lambda: component(tmp_path, "broken")["crash_loop"], 30, "a crash loop")
            looping = component(tmp_path, "broken")
    assert looping["restarts"] >= 3 and looping["recent_restarts"] >= 3
    assert looping["last_exit"] == "exit code 3"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors, "a crash loop is an ERROR line"
    assert "broken is crash-looping" in errors[0] and "exit code 3" in errors[0]
    assert "config error: BROKEN_SETTING must be set" in errors[0], "the child's last line says why"
    output = (tmp_path / "logs" / "broken.log").read_text()
    starts = output.count("--- oee supervisor: started")
    assert starts >= looping["restarts"] + 1, "each start is marked in the child's log"
    assert output.count("config error") >= starts - 1, (
        "every run that ended left its line (the last may not have)"
    )


async def test_stopping_sends_sigterm_then_sigkill_to_a_child_that_ignores_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up'); time.sleep(600)"
    )
    polite = "import time; print('up'); time.sleep(600)"
    with caplog.at_level(logging.INFO, logger="oee.supervisor"):
        async with supervising(
            tmp_path, [child("polite", polite), child("stubborn", stubborn)], log_max_bytes=1 << 20,
            log_backups=1, stop_timeout_s=1.0,
        ) as supervisor:  # fmt: skip
            await until(
                lambda: all(c["state"] == "running" for c in supervisor.snapshot["components"]), 30, "both up"
            )
            pids = {c["name"]: c["pid"] for c in supervisor.snapshot["components"]}
        assert not any(pid_alive(pid) for pid in pids.values())
    assert any(
        "stubborn did not stop within 1 s of SIGTERM: SIGKILL" in r.getMessage() for r in caplog.records
    )
    assert not any("polite did not stop" in r.getMessage() for r in caplog.records)
    assert {c["state"] for c in component_list(tmp_path)} == {"stopped"}
    assert not any((tmp_path / "run" / f"{n}.pid").exists() for n in pids)


async def test_a_watched_process_is_restarted_unless_it_was_stopped_on_purpose(tmp_path: Path) -> None:
    fake = Managed("fakedb", tmp_path)

    def start() -> int:
        return fake.start(["sleep", "600"])

    first = start()
    spec = InfraSpec("fakedb", "database", fake.pid, fake.stopped_on_purpose, start)
    try:
        async with supervising(tmp_path, [], [spec], log_max_bytes=1 << 20, log_backups=1):
            await until(lambda: component(tmp_path, "fakedb")["pid"] == first, 10, "the watcher to see it")
            os.kill(first, signal.SIGKILL)
            await until(lambda: component(tmp_path, "fakedb")["restarts"] == 1, 10, "a restart")
            await until(lambda: component(tmp_path, "fakedb")["state"] == "running", 10, "running again")
            again = component(tmp_path, "fakedb")
            assert again["pid"] not in (None, first) and again["last_exit"] == "gone"
            assert fake.stop(signal.SIGTERM, timeout=5)
            await until(lambda: component(tmp_path, "fakedb")["state"] == "stopped", 10, "stopped on purpose")
            await asyncio.sleep(1.0)  # a second of watching: nothing brings it back
            assert fake.pid() is None and component(tmp_path, "fakedb")["restarts"] == 1
    finally:
        fake.stop(signal.SIGKILL, timeout=5)
