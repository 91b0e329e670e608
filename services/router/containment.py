"""One order's failure stays that order's: a step that raises ends the order `failed`, the router goes on.

The router's per-order work is pure steps (`flow`, `resting`) over the order's request and its venues'
answers. If one raises — an event it builds fails the contract's validation (a venue quoted a price of
1e308), arithmetic on a quote divides by zero, a venue answered `None` where a number belongs — that is
about this order, not about the router: the same record read again would raise again, so stopping the
process would only restart it into the same failure (a crash loop that halts every order of its
partitions). Instead the order ends with `OrderFailed`, whose reason names the exception, in the same
transaction as the rest of its batch; the traceback is logged once.

What is not about one order still stops the process: a failed commit (broker), an admission (database), or
an error outside these steps (`supervision`). An order that already ended gets nothing more: the lifecycle
allows one terminal event (`events.lifecycle`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from events.types import OrderRequested
from services.metrics import router as router_metrics
from services.router.flow import Step, Tracked, fail

log = logging.getLogger("oee.router")

Stage = Literal["routing", "execution", "trigger"]
_STAGE: dict[str, Stage] = {"resting": "trigger", "routing": "routing", "submitted": "execution"}
REASON = "the router could not process the order"
"""How the reason of an order failed by its own processing starts."""


def stage_of(tracked: Tracked) -> Stage:
    """The failure's stage for an order in this phase (a resting order fails at `trigger`)."""
    return _STAGE.get(tracked.phase, "routing")


def contain(
    tracked: Tracked, now: datetime, step: Callable[[], Step | None], stage: Stage | None = None
) -> Step | None:
    """`step()`, or, if it raises, the order's `failed` step (nothing for an order that already ended)."""
    try:
        return step()
    except Exception as exc:
        return _failed(tracked, exc, now, stage or stage_of(tracked))


def accept_contained(request: OrderRequested, now: datetime, accept: Callable[[], Step]) -> Step:
    """A new order's first step, or, if building it raises, the request (seq 1) and `failed` (seq 2)."""
    try:
        return accept()
    except Exception as exc:
        pending = Tracked(
            order_id=request.order_id,
            status="pending",
            last_seq=request.seq,
            last_event_id=request.event_id,
            request=request.data,
        )
        failed = _failed(pending, exc, now, "routing")
        assert failed is not None  # a pending order has not ended
        return Step([request, *failed.events], failed.tracked)


def _failed(tracked: Tracked, exc: Exception, now: datetime, stage: Stage) -> Step | None:
    order_id = tracked.order_id
    if tracked.phase == "done":
        log.error("a step of an order that already ended raised: nothing written", exc_info=exc,
                  extra={"order_id": order_id})  # fmt: skip
        return None
    log.error("order failed by its own processing (%s)", stage, exc_info=exc, extra={"order_id": order_id})
    router_metrics.CONTAINED.labels(stage).inc()
    # A message is text the log must be able to encode: a lone surrogate (from a venue's answer) is replaced.
    detail = f"{type(exc).__name__}: {exc}".encode("utf-8", "replace").decode("utf-8")
    return fail(tracked, f"{REASON}: {detail}", stage, now)
