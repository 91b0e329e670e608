"""The chaos drill, short: `oee drill` as a user runs it, on three brokers, PostgreSQL and services of its own,
300 orders from retrying clients, 50 WebSocket subscribers and one fault of every kind. Every line that must
be zero is zero, and every kind was injected and recovered from (docs/drill.md has the full run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.drill.plan import KINDS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

SHORT = (
    "--orders", "300", "--rounds", "1", "--interval-s", "4", "--broker-pause-s", "8",
    "--postgres-down-s", "3", "--drop-replies-s", "4", "--partitions", "6", "--subscribers", "50",
    "--venue-latency-ms", "200-500",
)  # fmt: skip


@pytest.fixture
def where(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "drill"
    # Whatever became of the drill (a timeout kills it before it stops its stack): nothing stays running.
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")}
    env["OEE_STATE_DIR"] = str(tmp_path / "drill" / "state")
    subprocess.run([sys.executable, "-m", "services.cli", "down"], env=env, capture_output=True, timeout=180)


def test_a_short_drill_loses_doubles_and_breaks_nothing(where: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "drill", *SHORT, "--dir", str(where), "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=400,
    )
    print(result.stdout[-6000:])
    assert result.returncode == 0, f"{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    data = json.loads(report.read_text())
    assert data["ok"] and data["acknowledged"] == 300
    assert all(not problems for problems in data["failures"].values()), data["failures"]
    assert set(data["recovery"]) == set(KINDS), "one fault of each kind"
    assert all(r["injected"] >= 1 for r in data["recovery"].values())
    for kind in KINDS:
        assert f"  {kind}" in result.stdout, f"the table has a line for {kind}"
    assert "verdict: PASS" in result.stdout
