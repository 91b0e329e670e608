"""What a drill does, from `oee drill`'s options, each bounded (a drill is an input that can grow)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from pathlib import Path

from services.drill.plan import Durations
from services.envvars import ConfigError


@dataclass(frozen=True)
class DrillOptions:
    orders: int = 2000
    rounds: int = 2  # each fault kind once per round
    interval_s: float = 10.0  # between one fault's injection and the next (longer while one lasts)
    subscribers: int = 50
    clients: int = 64  # orders in flight at most (each retried by its client until answered)
    brokers: int = 3
    routers: int = 2
    apis: int = 2
    partitions: int = 12
    broker_pause_s: float = 30.0
    postgres_down_s: float = 10.0
    drop_replies_s: float = 10.0
    recovery_deadline_s: float = 120.0  # a fault after which no order completes for this long fails the drill
    settle_timeout_s: float = 240.0  # after the last order, how long everything may take to finish
    order_deadline_s: float = 300.0  # a client's retries of one order
    seed: int | None = None
    venue_latency_ms: str = ""  # VENUE_EXEC_LATENCY_MS for the drill's venue (empty: its default)
    directory: Path | None = None  # where the stack and the report go (default: a new temporary one)
    keep: bool = False  # leave the stack running and its data in place
    report: Path | None = None  # also write the JSON report here

    @property
    def durations(self) -> Durations:
        return Durations(self.broker_pause_s, self.postgres_down_s, self.drop_replies_s)

    def check(self) -> DrillOptions:
        bounds = {
            "orders": (1, 1_000_000),
            "rounds": (1, 100),
            "interval_s": (1, 600),
            "subscribers": (0, 1000),
            "clients": (1, 1000),
            "brokers": (3, 5),  # a broker fault needs the others to carry on: at least three
            "routers": (1, 16),
            "apis": (1, 16),
            "partitions": (1, 1000),
            "broker_pause_s": (1, 600),
            "postgres_down_s": (0, 600),
            "drop_replies_s": (1, 600),
            "recovery_deadline_s": (10, 3600),
            "settle_timeout_s": (10, 7200),
            "order_deadline_s": (10, 7200),
        }
        for name, (low, high) in bounds.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ConfigError(f"--{name.replace('_', '-')}={value:g} is outside {low}..{high}")
        return self


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = DrillOptions()
    add = parser.add_argument
    add("--orders", type=int, default=d.orders, help="orders to post (default %(default)s)")
    add("--rounds", type=int, default=d.rounds, help="rounds of faults, each kind once per round")
    add("--interval-s", type=float, default=d.interval_s, help="seconds between faults (default %(default)s)")
    add("--subscribers", type=int, default=d.subscribers, help="WebSocket subscribers (default %(default)s)")
    add("--clients", type=int, default=d.clients, help="orders in flight at most (default %(default)s)")
    add("--brokers", type=int, default=d.brokers, help="Kafka nodes (default %(default)s)")
    add("--routers", type=int, default=d.routers, help="router processes (default %(default)s)")
    add("--apis", type=int, default=d.apis, help="API processes (default %(default)s)")
    add("--partitions", type=int, default=d.partitions, help="partitions per topic (default %(default)s)")
    add("--broker-pause-s", type=float, default=d.broker_pause_s, help="SIGSTOP length (default %(default)s)")
    add("--postgres-down-s", type=float, default=d.postgres_down_s, help="PostgreSQL outage (%(default)s)")
    add("--drop-replies-s", type=float, default=d.drop_replies_s, help="venue replies lost for (%(default)s)")
    add(
        "--recovery-deadline-s",
        type=float,
        default=d.recovery_deadline_s,
        help="fail a fault not recovered in",
    )
    add("--settle-timeout-s", type=float, default=d.settle_timeout_s, help="wait for the last orders at most")
    add("--order-deadline-s", type=float, default=d.order_deadline_s, help="a client's retries of one order")
    add("--seed", type=int, default=None, help="fault order and targets (default: random, printed)")
    add("--venue-latency-ms", default="", help="VENUE_EXEC_LATENCY_MS of the drill's venue ('a' or 'a-b')")
    add("--dir", dest="directory", type=Path, default=None, help="where the stack runs (default: a temp dir)")
    add("--keep", action="store_true", help="leave the stack running and its data in place")
    add("--report", type=Path, default=None, help="also write the JSON report to this file")


def from_args(args: argparse.Namespace) -> DrillOptions:
    names = {f.name for f in fields(DrillOptions)}
    return DrillOptions(**{k: v for k, v in vars(args).items() if k in names}).check()
