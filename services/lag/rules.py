"""Consumer status from a sliding window of lag samples, in the spirit of Burrow. Pure: no I/O, no clock.

One `Observation` per sample and partition: when, the committed offset, the log end (last stable offset), the
offset lag and the time lag. `partition_status` looks at the observations of the last window (the caller
trims it) and at the group's member count, and names the state with the first rule that matches:

1. ERR     the committed offset went backwards inside the window (a reset or rewind), or lies beyond the end.
2. OK      nothing is unread now (lag 0).
3. STOPPED the group has no members (known from the broker) and records are unread: nobody will read them.
4. STALL / STOPPED  the window holds at least `min_samples` observations, every one with lag > 0, and the
           committed offset did not move across it: with members (or a live process) the consumer is there
           but not progressing (STALL: stuck on a record, paused, wedged); with membership unknown (a
           projection's positions in Postgres) STOPPED when the lag grew across the window, else STALL.
5. ERR     the lag is beyond a threshold (offsets or seconds): progressing, but too far behind to be fine.
6. WARN    the committed offset moved but the lag grew across the window and never shrank: falling behind.
7. OK      otherwise (including "collecting samples" while the window is shorter than `min_samples`).

A group's status is its worst partition's (`SEVERITY`). The rules are written down in `docs/lag.md`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    OK = "OK"
    WARN = "WARN"
    STALL = "STALL"
    STOPPED = "STOPPED"
    ERR = "ERR"


SEVERITY: dict[Status, int] = {
    Status.OK: 0,
    Status.WARN: 1,
    Status.STALL: 2,
    Status.STOPPED: 3,
    Status.ERR: 4,
}
"""Worse is larger; also the value of the `oee_consumer_group_status` gauge."""


@dataclass(frozen=True, slots=True)
class Observation:
    """One sample of one partition. `committed` is None while the group has no offset for the partition."""

    at: float
    committed: int | None
    end: int
    lag: int
    time_lag_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Thresholds:
    """`min_samples`: how many observations a trend rule needs. An ERR threshold of 0 is off."""

    min_samples: int = 3
    err_offsets: int = 100_000
    err_seconds: float = 300.0


@dataclass(frozen=True, slots=True)
class Verdict:
    status: Status
    reason: str


def partition_status(
    window: Sequence[Observation], members: int | None, thresholds: Thresholds = Thresholds()
) -> Verdict:
    """The status of one partition from its observations in the window (oldest first).

    `members`: how many consumers the group has (0: none), or None when the source cannot tell.
    """
    if not window:
        return Verdict(Status.OK, "no samples yet")
    last = window[-1]
    for before, after in itertools.pairwise(window):
        if _offset(after.committed) < _offset(before.committed):
            return Verdict(
                Status.ERR, f"committed offset went backwards ({before.committed} -> {after.committed})"
            )
    if last.committed is not None and last.committed > last.end:
        return Verdict(
            Status.ERR, f"committed offset {last.committed} is beyond the end of the log ({last.end})"
        )
    if last.lag <= 0:
        return Verdict(Status.OK, "caught up")
    if members == 0:
        return Verdict(Status.STOPPED, f"no members in the group and {last.lag} unread")
    trend = len(window) >= thresholds.min_samples and all(o.lag > 0 for o in window)
    first = window[0]
    span = last.at - first.at
    if trend and _offset(first.committed) == _offset(last.committed):
        if members is None and last.lag > first.lag:
            return Verdict(
                Status.STOPPED, f"no progress for {span:.0f} s while the lag grew {first.lag} -> {last.lag}"
            )
        who = f"{members} member(s) in the group" if members else "its process alive"
        return Verdict(Status.STALL, f"no progress for {span:.0f} s with {last.lag} unread and {who}")
    if thresholds.err_offsets and last.lag >= thresholds.err_offsets:
        return Verdict(Status.ERR, f"lag {last.lag} is at or beyond {thresholds.err_offsets} offsets")
    if thresholds.err_seconds and last.time_lag_s >= thresholds.err_seconds:
        return Verdict(
            Status.ERR, f"time lag {last.time_lag_s:.0f} s is at or beyond {thresholds.err_seconds:g} s"
        )
    if trend and last.lag > first.lag and all(b.lag <= a.lag for b, a in itertools.pairwise(window)):
        return Verdict(Status.WARN, f"committing, but the lag grew {first.lag} -> {last.lag} in {span:.0f} s")
    if len(window) < thresholds.min_samples:
        return Verdict(Status.OK, f"collecting samples ({len(window)} of {thresholds.min_samples})")
    return Verdict(Status.OK, "progressing")


def worst(verdicts: Iterable[tuple[str, Verdict]]) -> Verdict:
    """A group's verdict: its worst partition's, the reason prefixed with where (e.g. `orders.events[3]`)."""
    found: tuple[str, Verdict] | None = None
    for where, verdict in verdicts:
        if found is None or SEVERITY[verdict.status] > SEVERITY[found[1].status]:
            found = (where, verdict)
    if found is None:
        return Verdict(Status.OK, "no partitions")
    where, verdict = found
    if verdict.status is Status.OK:
        return Verdict(Status.OK, "every partition OK")
    return Verdict(verdict.status, f"{where}: {verdict.reason}")


def _offset(committed: int | None) -> int:
    # A partition without a committed offset reads from the log start: order it before any real offset.
    return -1 if committed is None else committed
