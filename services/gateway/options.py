"""The gateway's settings, read from `GATEWAY_*` variables (the shared ones come from `services.config`).

`GATEWAY_ENV_VARS` documents every variable with its default in the shape of `services.config.ENV_VARS`, so
the project-wide list can include it. A malformed value raises `ConfigError` naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.envvars import env_int, env_str

GATEWAY_ENV_VARS: dict[str, tuple[str, str]] = {
    "GATEWAY_HOST": ("127.0.0.1", "bind address of `oee gateway` (the standalone WebSocket gateway)"),
    "GATEWAY_PORT": ("3200", "port of `oee gateway`"),
    "GATEWAY_SEND_QUEUE": ("1000", "frames queued per connection before a client is closed as too slow"),
    "GATEWAY_SEND_QUEUE_BYTES": (
        "4194304",
        "characters (bytes, for ASCII) queued per connection before a client is closed as too slow",
    ),
    "GATEWAY_SLOW_GRACE_MS": (
        "1000",
        "how long a connection's queue may stay over the limit (bursts) before 1013",
    ),
    "GATEWAY_CLOSE_TIMEOUT_MS": ("10000", "how long a close may wait on a socket the client does not read"),
    "GATEWAY_NOT_FOUND_TIMEOUT_MS": ("30000", "close an order stream (4404) if the order never appears"),
    "GATEWAY_HEARTBEAT_MS": ("15000", "heartbeat frame interval on the multiplexed /ws endpoint"),
    "GATEWAY_MAX_CONNECTIONS": ("20000", "connections one gateway process accepts; more are closed 1013"),
    "GATEWAY_MAX_ACCOUNT_CONNECTIONS": (
        "1000",
        "connections one account may hold per process; more closed 1008",
    ),
    "GATEWAY_MAX_SUBSCRIPTIONS": ("1000", "orders one /ws connection may follow at once"),
    "GATEWAY_MAX_LOOKUPS": (
        "100",
        "history look-ups (database or log) one connection may have under way; its next message waits",
    ),
    "GATEWAY_MAX_MESSAGE_BYTES": (
        "65536",
        "largest client message on every WebSocket endpoint; larger: 1009",
    ),
    "GATEWAY_RECENT_EVENTS": ("50000", "events kept in memory from the log tail (all partitions together)"),
    "GATEWAY_LOG_LOOKBACK": ("50000", "records of a partition a history search in the log reads at most"),
    "GATEWAY_LOG_SCAN_DELAY_MS": (
        "500",
        "wait for a live event before searching the log for an unseen order",
    ),
    "GATEWAY_DB_POOL": ("4", "PostgreSQL connections the gateway's history reads use"),
    "GATEWAY_DB_TIMEOUT_MS": ("2000", "deadline of one history query; past it the log is searched instead"),
    "GATEWAY_COMPRESSION": ("0", "1: per-message deflate on `oee gateway` (~50 KiB and CPU per client)"),
}


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    """Tunables of the WebSocket gateway. The defaults suit production; tests shrink the timeouts."""

    host: str = "127.0.0.1"
    port: int = 3200
    send_queue: int = 1000
    send_queue_bytes: int = 4 * 1024 * 1024
    slow_grace_s: float = 1.0
    close_timeout_s: float = 10.0
    not_found_timeout_s: float = 30.0
    heartbeat_s: float = 15.0
    max_connections: int = 20_000
    max_account_connections: int = 1000
    max_subscriptions: int = 1000
    max_lookups: int = 100
    max_message_bytes: int = 64 * 1024
    recent_events: int = 50_000
    log_lookback: int = 50_000
    log_scan_delay_s: float = 0.5
    db_pool: int = 4
    db_timeout_s: float = 2.0
    compression: bool = False
    ready_timeout_s: float = 10.0  # how long a new connection waits for the log tail to be positioned

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewayOptions:
        env = os.environ if env is None else env
        return cls(
            host=_get(env, "GATEWAY_HOST"),
            port=_int(env, "GATEWAY_PORT", 1, 65535),
            send_queue=_int(env, "GATEWAY_SEND_QUEUE", 2, 1_000_000),
            send_queue_bytes=_int(env, "GATEWAY_SEND_QUEUE_BYTES", 4096, 1 << 31),
            slow_grace_s=_int(env, "GATEWAY_SLOW_GRACE_MS", 0, 600_000) / 1000,
            close_timeout_s=_int(env, "GATEWAY_CLOSE_TIMEOUT_MS", 1, 600_000) / 1000,
            not_found_timeout_s=_int(env, "GATEWAY_NOT_FOUND_TIMEOUT_MS", 1, 86_400_000) / 1000,
            heartbeat_s=_int(env, "GATEWAY_HEARTBEAT_MS", 10, 3_600_000) / 1000,
            max_connections=_int(env, "GATEWAY_MAX_CONNECTIONS", 1, 10_000_000),
            max_account_connections=_int(env, "GATEWAY_MAX_ACCOUNT_CONNECTIONS", 1, 10_000_000),
            max_subscriptions=_int(env, "GATEWAY_MAX_SUBSCRIPTIONS", 1, 1_000_000),
            max_lookups=_int(env, "GATEWAY_MAX_LOOKUPS", 1, 1_000_000),
            max_message_bytes=_int(env, "GATEWAY_MAX_MESSAGE_BYTES", 256, 64 * 1024 * 1024),
            recent_events=_int(env, "GATEWAY_RECENT_EVENTS", 0, 100_000_000),
            log_lookback=_int(env, "GATEWAY_LOG_LOOKBACK", 1, 1_000_000_000),
            log_scan_delay_s=_int(env, "GATEWAY_LOG_SCAN_DELAY_MS", 0, 600_000) / 1000,
            db_pool=_int(env, "GATEWAY_DB_POOL", 1, 1000),
            db_timeout_s=_int(env, "GATEWAY_DB_TIMEOUT_MS", 1, 600_000) / 1000,
            compression=_int(env, "GATEWAY_COMPRESSION", 0, 1) == 1,
        )


def _get(env: Mapping[str, str], name: str) -> str:
    return env_str(env, name, GATEWAY_ENV_VARS)


def _int(env: Mapping[str, str], name: str, low: int, high: int) -> int:
    return env_int(env, name, low, high, GATEWAY_ENV_VARS)
