"""Metrics helpers for the projector (its engineer wires them; see docs/lag.md).

Call `observe_batch` after each batch's Postgres transaction committed, and serve them with
`services.metrics.serve(port)` (the projector has no HTTP server). The lag monitor in the API measures the
projector's lag from its stored positions either way; these say how fast and how late it applies.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime

from prometheus_client import Counter, Histogram

from services.metrics import FAST_BUCKETS, SLOW_BUCKETS

APPLIED = Counter("oee_projector_events_applied", "Events applied to the projection's tables", ["projection"])
DUPLICATES = Counter("oee_projector_duplicates", "Events skipped as already applied", ["projection"])
DEAD_LETTERS = Counter("oee_projector_dead_letters", "Records the projector set aside", ["projection"])
BATCH_SECONDS = Histogram(
    "oee_projector_batch_seconds",
    "Time to apply one batch (one transaction)",
    ["projection"],
    buckets=FAST_BUCKETS,
)
APPLY_LAG = Histogram(
    "oee_projector_apply_lag_seconds",
    "Event occurred_at to the commit of the batch that applied it",
    ["projection"],
    buckets=SLOW_BUCKETS,
)


def observe_batch(
    projection: str,
    seconds: float,
    occurred_at: Iterable[datetime],
    duplicates: int = 0,
    dead_letters: int = 0,
    now: float | None = None,
) -> None:
    """One committed batch: how long it took and, per applied event, how late it was applied."""
    now = time.time() if now is None else now
    BATCH_SECONDS.labels(projection).observe(seconds)
    lag = APPLY_LAG.labels(projection)
    applied = 0
    for at in occurred_at:
        lag.observe(max(0.0, now - at.timestamp()))
        applied += 1
    APPLIED.labels(projection).inc(applied)
    if duplicates:
        DUPLICATES.labels(projection).inc(duplicates)
    if dead_letters:
        DEAD_LETTERS.labels(projection).inc(dead_letters)
