"""The lag status rules (docs/lag.md), table-driven: a window of (committed, end) samples -> a status."""

from __future__ import annotations

import pytest

from services.lag.rules import SEVERITY, Observation, Status, Thresholds, Verdict, partition_status, worst

T = Thresholds(min_samples=3, err_offsets=1000, err_seconds=60)


def window(*points: tuple[int | None, int], time_lag: float = 1.0, every: float = 2.0) -> list[Observation]:
    """Observations `every` seconds apart from (committed, end) pairs; lag = end - committed."""
    return [
        Observation(
            at=i * every,
            committed=c,
            end=e,
            lag=max(0, e - (c or 0)),
            time_lag_s=time_lag if e > (c or 0) else 0,
        )
        for i, (c, e) in enumerate(points)
    ]


CASES = [
    # (name, window, members, expected status)
    ("no samples", [], 1, Status.OK),
    ("caught up", window((10, 10), (20, 20), (30, 30)), 1, Status.OK),
    ("caught up now after lagging", window((10, 20), (15, 30), (40, 40)), 1, Status.OK),
    ("caught up and no members", window((10, 10), (10, 10), (10, 10)), 0, Status.OK),
    ("lag growing while committing", window((10, 20), (15, 30), (20, 45)), 1, Status.WARN),
    ("lag steady while committing", window((10, 20), (20, 30), (30, 40)), 1, Status.OK),
    ("lag shrinking while committing", window((10, 40), (30, 45), (45, 50)), 1, Status.OK),
    ("lag grew but dipped inside the window", window((10, 20), (18, 25), (20, 40)), 1, Status.OK),
    ("no commits while lag > 0, members present", window((10, 20), (10, 20), (10, 20)), 2, Status.STALL),
    ("no commits, lag growing, members present", window((10, 20), (10, 30), (10, 40)), 1, Status.STALL),
    ("no members and lag > 0", window((10, 20)), 0, Status.STOPPED),
    ("no members, lag growing", window((10, 20), (10, 30), (10, 40)), 0, Status.STOPPED),
    (
        "membership unknown, no progress, lag growing",
        window((10, 20), (10, 30), (10, 40)),
        None,
        Status.STOPPED,
    ),
    (
        "membership unknown, no progress, lag constant",
        window((10, 20), (10, 20), (10, 20)),
        None,
        Status.STALL,
    ),
    ("membership unknown, progressing", window((10, 20), (20, 30), (30, 40)), None, Status.OK),
    ("offsets went backwards", window((30, 40), (10, 40), (20, 40)), 1, Status.ERR),
    ("committed beyond the end", window((50, 40)), 1, Status.ERR),
    ("lag beyond the offset threshold", window((10, 2000), (900, 2900), (1800, 3800)), 1, Status.ERR),
    (
        "time lag beyond the seconds threshold",
        window((10, 20), (20, 30), (30, 40), time_lag=61),
        1,
        Status.ERR,
    ),
    ("too few samples for a trend", window((10, 20), (10, 30)), 1, Status.OK),
    ("no committed offset yet, nothing read", window((None, 20), (None, 20), (None, 20)), 1, Status.STALL),
    ("stalled beats the threshold", window((10, 5000), (10, 5000), (10, 5000)), 1, Status.STALL),
]


@pytest.mark.parametrize(("name", "observations", "members", "expected"), CASES, ids=[c[0] for c in CASES])
def test_partition_status(
    name: str, observations: list[Observation], members: int | None, expected: Status
) -> None:
    verdict = partition_status(observations, members, T)
    assert verdict.status is expected, verdict.reason
    assert verdict.reason


def test_thresholds_of_zero_are_off() -> None:
    off = Thresholds(min_samples=3, err_offsets=0, err_seconds=0)
    observations = window((0, 10**9), (10**6, 10**9 + 10**6), (2 * 10**6, 10**9 + 2 * 10**6), time_lag=10**6)
    assert partition_status(observations, 1, off).status is Status.OK


def test_worst_names_the_partition_and_orders_by_severity() -> None:
    verdicts = [
        ("t[0]", Verdict(Status.OK, "caught up")),
        ("t[1]", Verdict(Status.WARN, "falling behind")),
        ("t[2]", Verdict(Status.STALL, "stuck")),
    ]
    group = worst(verdicts)
    assert group.status is Status.STALL
    assert group.reason == "t[2]: stuck"
    assert worst([("t[0]", Verdict(Status.OK, "caught up"))]).status is Status.OK
    assert worst([]).status is Status.OK
    assert [s for s, _ in sorted(SEVERITY.items(), key=lambda kv: kv[1])] == [
        Status.OK, Status.WARN, Status.STALL, Status.STOPPED, Status.ERR,
    ]  # fmt: skip
