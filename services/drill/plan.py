"""The faults a drill injects, in which order, and how long the whole plan should take. Pure.

Every round holds each kind once, in a seeded random order, so a run of R rounds injects every kind R times
and the same seed gives the same order.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

KILL_ROUTER = "kill-router"
KILL_PROJECTOR = "kill-projector"
KILL_API = "kill-api"
KILL_GATEWAY = "kill-gateway"
KILL_VENUE = "kill-venue"
KILL_BROKER = "kill-broker"
PAUSE_BROKER = "pause-broker"
STOP_POSTGRES = "stop-postgres"
DROP_REPLIES = "drop-venue-replies"

KINDS: tuple[str, ...] = (
    KILL_ROUTER,
    KILL_PROJECTOR,
    KILL_API,
    KILL_GATEWAY,
    KILL_VENUE,
    KILL_BROKER,
    PAUSE_BROKER,
    STOP_POSTGRES,
    DROP_REPLIES,
)
DESCRIPTIONS: dict[str, str] = {
    KILL_ROUTER: "SIGKILL of a router (the supervisor restarts it)",
    KILL_PROJECTOR: "SIGKILL of the projector",
    KILL_API: "SIGKILL of an API process",
    KILL_GATEWAY: "SIGKILL of the standalone WebSocket gateway",
    KILL_VENUE: "SIGKILL of the venue server",
    KILL_BROKER: "SIGKILL of a broker node (the supervisor restarts it)",
    PAUSE_BROKER: "SIGSTOP of a broker node, SIGCONT after the pause",
    STOP_POSTGRES: "PostgreSQL stopped immediately (SIGQUIT), started again after the outage",
    DROP_REPLIES: "venue replies lost: requests reach the venue, responses are dropped",
}


@dataclass(frozen=True)
class Durations:
    """How long the faults that last a while last, in seconds."""

    broker_pause_s: float = 30.0
    postgres_down_s: float = 10.0
    drop_replies_s: float = 10.0

    def of(self, kind: str) -> float:
        return {
            PAUSE_BROKER: self.broker_pause_s,
            STOP_POSTGRES: self.postgres_down_s,
            DROP_REPLIES: self.drop_replies_s,
        }.get(kind, 0.0)


def plan(rounds: int, seed: int, kinds: Sequence[str] = KINDS) -> list[str]:
    """`rounds` rounds, each kind once per round, shuffled per round by `seed`."""
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(rounds):
        one = list(kinds)
        rng.shuffle(one)
        out.extend(one)
    return out


def expected_span_s(kinds: Sequence[str], interval_s: float, durations: Durations) -> float:
    """About how long injecting `kinds` takes: a fault every `interval_s`, or its own duration plus a few
    seconds when it lasts longer than that (the next fault waits until the last one is healed)."""
    return sum(max(interval_s, durations.of(kind) + 5.0) for kind in kinds)
