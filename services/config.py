"""The settings every process shares (where the broker and the database are, the topic layout, the API's
address, logging) and the local stack's, read from the environment.

Every setting has a documented default that works on a developer machine with the local stack
(`oee stack up`). A malformed value is an error at start (`ConfigError`), never at the first request.
`ENV_VARS` lists these variables with their defaults. Each component owns its own variables, declared on its
options class (`services.envvars`); `services.variables.all_env_vars()` gathers every table for the CLI, the
docs and the tests. This module imports no component: components import it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.envvars import ConfigError, env_int, env_str
from services.logs import LEVELS
from services.stack.cluster import MAX_BROKERS, KafkaNode, bootstrap_of, formatted_brokers, local_nodes

REPO_ROOT = Path(__file__).resolve().parent.parent
MIN_LOG_BYTES = 4096  # a smaller limit would rotate on every few lines


LOG_LEVELS = LEVELS


# name -> (default, description). The default "" means "unset".
ENV_VARS: dict[str, tuple[str, str]] = {
    "KAFKA_BOOTSTRAP_SERVERS": ("", "external broker; unset: the local stack's Kafka"),
    "DATABASE_URL": ("", "external PostgreSQL; unset: the local stack's embedded PostgreSQL"),
    "PORT": ("3000", "HTTP port of the API (and the WebSocket paths beside it)"),
    "HOST": ("127.0.0.1", "HTTP bind address of the API"),
    "LOG_LEVEL": ("info", "debug, info, warning, error"),
    "LOG_FORMAT": ("text", "text or json"),
    "ACCESS_LOG": (
        "on",
        "on: one log line per HTTP request and WebSocket session (logger oee.access) with its request id; off",
    ),
    "OEE_TOPIC_PREFIX": ("", "prefix for every topic name (tests use a unique one)"),
    "OEE_PARTITIONS": ("12", "partitions of each topic created by the stack"),
    "OEE_TOKENS": ("SOL,USDC,ETH,USDT", "tokens the API accepts"),
    "OEE_STATE_DIR": ("", "local stack data and pid files; unset: <repo>/.stack"),
    "OEE_CACHE_DIR": ("", "downloaded Kafka jars; unset: ~/.cache/oee"),
    "OEE_KAFKA_VERSION": ("4.1.1", "Apache Kafka version the local stack fetches with mvn"),
    "OEE_KAFKA_BROKERS": ("", "local Kafka nodes (1-5) of a new local cluster; unset: as formatted, else 1"),
    "OEE_KAFKA_PORT": ("9092", "local broker port (node n: this + 2(n-1))"),
    "OEE_KAFKA_CONTROLLER_PORT": ("9093", "local KRaft controller port (node n: this + 2(n-1))"),
    "OEE_KAFKA_HEAP": ("512m", "JVM heap of each local broker"),
    "OEE_PG_PORT": ("5432", "local PostgreSQL port"),
    "OEE_START_TIMEOUT": ("60", "seconds to wait for the local broker and database to answer"),
    "OEE_LOG_MAX_BYTES": ("10485760", "size at which a service's or a local broker's log file is rotated"),
    "OEE_LOG_BACKUPS": ("5", "rotated log files kept per service or broker (<name>.log.1 .. .N)"),
}


def _get(env: Mapping[str, str], name: str) -> str:
    return env_str(env, name, ENV_VARS)


def _int(env: Mapping[str, str], name: str, low: int = 0, high: int = 1 << 31) -> int:
    return env_int(env, name, low, high, ENV_VARS)


@dataclass(frozen=True)
class StackConfig:
    """Where and how the local stack (Kafka + PostgreSQL) runs."""

    state_dir: Path
    cache_dir: Path
    kafka_version: str
    kafka_port: int
    controller_port: int
    kafka_heap: str
    pg_port: int
    start_timeout: float
    external_kafka: str
    external_database: str
    # How many nodes the local Kafka cluster has: the one in the state directory as it was formatted, else
    # the number asked for (OEE_KAFKA_BROKERS or `--brokers`), else 1. `kafka_brokers_asked` is 0 when
    # nothing was asked, so that `kafka.start` can refuse to start a 3-node cluster as a single node.
    # (No field has a default: `load_stack` fills every one from `ENV_VARS`, the one place they are written.)
    kafka_brokers: int
    kafka_brokers_asked: int
    log_max_bytes: int
    log_backups: int

    @property
    def kafka_nodes(self) -> tuple[KafkaNode, ...]:
        return local_nodes(self.kafka_brokers, self.kafka_port, self.controller_port)

    @property
    def bootstrap_servers(self) -> str:
        return self.external_kafka or bootstrap_of(self.kafka_nodes)

    @property
    def database_url(self) -> str:
        return self.external_database or f"postgresql://oee@127.0.0.1:{self.pg_port}/oee"


@dataclass(frozen=True)
class Settings:
    """What every service needs: where the broker and the database are, and the topic layout."""

    bootstrap_servers: str
    database_url: str
    topic_prefix: str
    partitions: int
    host: str
    port: int
    log_level: str
    log_format: str
    tokens: tuple[str, ...]
    stack: StackConfig = field(repr=False)
    access_log: bool = True


def load_stack(env: Mapping[str, str] | None = None, brokers: int | None = None) -> StackConfig:
    """The local stack's settings; `brokers` (the `--brokers` option) overrides OEE_KAFKA_BROKERS."""
    env = os.environ if env is None else env
    state = _get(env, "OEE_STATE_DIR")
    cache = _get(env, "OEE_CACHE_DIR")
    state_dir = Path(state).resolve() if state else REPO_ROOT / ".stack"
    if brokers is not None:
        if not 1 <= brokers <= MAX_BROKERS:
            raise ConfigError(f"--brokers {brokers} is outside 1..{MAX_BROKERS}")
        asked = brokers
    else:
        asked = _int(env, "OEE_KAFKA_BROKERS", 1, MAX_BROKERS) if _get(env, "OEE_KAFKA_BROKERS") else 0
    count = formatted_brokers(state_dir / "kafka") or asked or 1
    kafka_port = _int(env, "OEE_KAFKA_PORT", 1, 65535)
    controller_port = _int(env, "OEE_KAFKA_CONTROLLER_PORT", 1, 65535)
    try:
        local_nodes(count, kafka_port, controller_port)
    except ValueError as exc:
        raise ConfigError(f"OEE_KAFKA_PORT/OEE_KAFKA_CONTROLLER_PORT: {exc}") from None
    return StackConfig(
        state_dir=state_dir,
        cache_dir=Path(cache).resolve() if cache else Path.home() / ".cache" / "oee",
        kafka_version=_get(env, "OEE_KAFKA_VERSION"),
        kafka_port=kafka_port,
        controller_port=controller_port,
        kafka_heap=_get(env, "OEE_KAFKA_HEAP"),
        pg_port=_int(env, "OEE_PG_PORT", 1, 65535),
        start_timeout=float(_int(env, "OEE_START_TIMEOUT", 1, 3600)),
        external_kafka=_get(env, "KAFKA_BOOTSTRAP_SERVERS"),
        external_database=_get(env, "DATABASE_URL"),
        kafka_brokers=count,
        kafka_brokers_asked=asked,
        log_max_bytes=_int(env, "OEE_LOG_MAX_BYTES", MIN_LOG_BYTES, 1 << 40),
        log_backups=_int(env, "OEE_LOG_BACKUPS", 1, 100),
    )


def load(env: Mapping[str, str] | None = None, brokers: int | None = None) -> Settings:
    env = os.environ if env is None else env
    stack = load_stack(env, brokers)
    log_format = _get(env, "LOG_FORMAT").lower()
    if log_format not in ("text", "json"):
        raise ConfigError(f"LOG_FORMAT={log_format!r} must be text or json")
    log_level = _get(env, "LOG_LEVEL").strip().lower()
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL={log_level[:40]!r} must be one of {', '.join(LOG_LEVELS)}")
    access_log = _get(env, "ACCESS_LOG").strip().lower()
    if access_log not in ("on", "off"):
        raise ConfigError(f"ACCESS_LOG={access_log[:40]!r} must be on or off")
    tokens = tuple(t.strip().upper() for t in _get(env, "OEE_TOKENS").split(",") if t.strip())
    if len(tokens) < 2:
        raise ConfigError("OEE_TOKENS must name at least two tokens")
    return Settings(
        bootstrap_servers=stack.bootstrap_servers,
        database_url=stack.database_url,
        topic_prefix=_get(env, "OEE_TOPIC_PREFIX"),
        partitions=_int(env, "OEE_PARTITIONS", 1, 10_000),
        host=_get(env, "HOST"),
        port=_int(env, "PORT", 1, 65535),
        log_level=log_level.upper(),
        log_format=log_format,
        access_log=access_log == "on",
        tokens=tokens,
        stack=stack,
    )
