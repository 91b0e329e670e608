"""The gateway's settings, each declared once with its `GATEWAY_*` variable (`services.envvars`).

`GATEWAY_ENV_VARS` is derived from the declarations. A malformed value raises `ConfigError` naming the
variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.envvars import flag, integer, millis, read, table, text


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    """Tunables of the WebSocket gateway. The defaults suit production; tests shrink the timeouts."""

    host: str = text(
        "GATEWAY_HOST", "127.0.0.1", "bind address of `oee gateway` (the standalone WebSocket gateway)"
    )
    port: int = integer("GATEWAY_PORT", 3200, "port of `oee gateway`", 1, 65535)
    send_queue: int = integer(
        "GATEWAY_SEND_QUEUE",
        1000,
        "frames queued per connection before a client is closed as too slow",
        2,
        1_000_000,
    )
    send_queue_bytes: int = integer(
        "GATEWAY_SEND_QUEUE_BYTES", 4 * 1024 * 1024,
        "characters (bytes, for ASCII) queued per connection before a client is closed as too slow", 4096, 1 << 31,
    )  # fmt: skip
    slow_grace_s: float = millis(
        "GATEWAY_SLOW_GRACE_MS", 1.0, "how long a connection's queue may stay over the limit (bursts) before 1013",
        0, 600_000,
    )  # fmt: skip
    close_timeout_s: float = millis(
        "GATEWAY_CLOSE_TIMEOUT_MS",
        10.0,
        "how long a close may wait on a socket the client does not read",
        1,
        600_000,
    )
    not_found_timeout_s: float = millis(
        "GATEWAY_NOT_FOUND_TIMEOUT_MS",
        30.0,
        "close an order stream (4404) if the order never appears",
        1,
        86_400_000,
    )
    heartbeat_s: float = millis(
        "GATEWAY_HEARTBEAT_MS",
        15.0,
        "heartbeat frame interval on the multiplexed /ws endpoint",
        10,
        3_600_000,
    )
    max_connections: int = integer(
        "GATEWAY_MAX_CONNECTIONS", 20_000, "connections one gateway process accepts; more are closed 1013",
        1, 10_000_000,
    )  # fmt: skip
    max_account_connections: int = integer(
        "GATEWAY_MAX_ACCOUNT_CONNECTIONS", 1000, "connections one account may hold per process; more closed 1008",
        1, 10_000_000,
    )  # fmt: skip
    max_subscriptions: int = integer(
        "GATEWAY_MAX_SUBSCRIPTIONS", 1000, "orders one /ws connection may follow at once", 1, 1_000_000
    )
    max_lookups: int = integer(
        "GATEWAY_MAX_LOOKUPS", 100,
        "history look-ups (database or log) one connection may have under way; its next message waits", 1, 1_000_000,
    )  # fmt: skip
    max_message_bytes: int = integer(
        "GATEWAY_MAX_MESSAGE_BYTES", 64 * 1024, "largest client message on every WebSocket endpoint; larger: 1009",
        256, 64 * 1024 * 1024,
    )  # fmt: skip
    recent_events: int = integer(
        "GATEWAY_RECENT_EVENTS", 50_000, "events kept in memory from the log tail (all partitions together)",
        0, 100_000_000,
    )  # fmt: skip
    log_lookback: int = integer(
        "GATEWAY_LOG_LOOKBACK", 50_000, "records of a partition a history search in the log reads at most",
        1, 1_000_000_000,
    )  # fmt: skip
    log_scan_delay_s: float = millis(
        "GATEWAY_LOG_SCAN_DELAY_MS", 0.5, "wait for a live event before searching the log for an unseen order",
        0, 600_000,
    )  # fmt: skip
    db_pool: int = integer(
        "GATEWAY_DB_POOL", 4, "PostgreSQL connections the gateway's history reads use", 1, 1000
    )
    db_timeout_s: float = millis(
        "GATEWAY_DB_TIMEOUT_MS",
        2.0,
        "deadline of one history query; past it the log is searched instead",
        1,
        600_000,
    )
    compression: bool = flag(
        "GATEWAY_COMPRESSION", False, "1: per-message deflate on `oee gateway` (~50 KiB and CPU per client)"
    )
    ready_timeout_s: float = 10.0  # how long a new connection waits for the log tail to be positioned

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewayOptions:
        return read(cls, os.environ if env is None else env)


GATEWAY_ENV_VARS = table(GatewayOptions)
