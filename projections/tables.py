"""The projection's tables as SQLAlchemy Core metadata: what the read API builds its queries from.

The migrations in `sql/` create the tables (checksummed, applied per schema, a rebuild migrates a fresh
schema); this module describes what they create, column for column, index for index, and
`tests/integration/test_projection_tables.py` holds the two equal by migrating one schema, creating another
from this metadata and comparing Postgres' own catalog of both. A migration that changes a table without
this description, or the reverse, fails that test.

The tables are declared without a schema: a projection lives in the schema its process is given
(`PROJECTION_SCHEMA`, a test's own, a rebuild's), put in at compile time by `schema_translate_map`
(`services.query.statements`). No ORM: nothing maps rows to objects; the projector and the rebuild write
with `unnest` and COPY (`projections.store`, `projections.bulk`) and do not import this module, so their
processes do not pay SQLAlchemy's import (~0.5 s of CPU per start, measured in docs/benchmarks.md).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import DOUBLE_PRECISION, JSONB, TIMESTAMP, UUID

from events.lifecycle import TERMINAL

OPEN_ORDERS = "status NOT IN (" + ", ".join(f"'{s}'" for s in sorted(TERMINAL)) + ")"
"""An order not yet ended, as the partial index `orders_account_open` says it (sql/0004) and the open-orders
count repeats it word for word: the planner uses a partial index only for a query that implies its predicate."""

metadata = MetaData()

_UUID = UUID(as_uuid=False)  # the read API hands ids on as text; asyncpg takes str for uuid parameters
_FLOAT: DOUBLE_PRECISION[float] = DOUBLE_PRECISION()
_TIME = TIMESTAMP(timezone=True)

orders = Table(
    "orders",
    metadata,
    # sql/0001
    Column("id", _UUID, nullable=False),
    Column("type", Text, nullable=False, server_default=text("'market'")),
    Column("base_token", Text, nullable=False),
    Column("quote_token", Text, nullable=False),
    Column("side", Text, nullable=False),
    Column("amount_in", _FLOAT, nullable=False),
    Column("slippage_bps", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("selected_dex", Text),
    Column("quotes", JSONB),
    Column("min_acceptable_price", _FLOAT),
    Column("executed_price", _FLOAT),
    Column("amount_out", _FLOAT),
    Column("tx_hash", Text),
    Column("failure_reason", Text),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("idempotency_key", Text),
    Column("created_at", _TIME, nullable=False),
    Column("updated_at", _TIME, nullable=False),
    Column("last_seq", Integer, nullable=False),
    Column("last_topic", Text, nullable=False),
    Column("last_partition", Integer, nullable=False),
    Column("last_offset", BigInteger, nullable=False),
    # sql/0002: the rest of the lifecycle's OrderState
    Column("last_event_id", _UUID),
    Column("route_reason", Text),
    Column("client_order_id", Text),
    Column("expected_price", _FLOAT),
    Column("failure_stage", Text),
    # sql/0003: the account that placed it
    Column("account_id", Text, nullable=False, server_default=text("'local'")),
    # sql/0004: limit and sniper orders
    Column("limit_price", _FLOAT),
    Column("max_price", _FLOAT),
    Column("min_liquidity", _FLOAT),
    Column("expires_at", _TIME),
    Column("trigger_price", _FLOAT),
    Column("trigger_venue", Text),
    Column("triggered_at", _TIME),
    PrimaryKeyConstraint("id", name="orders_pkey"),
    CheckConstraint("side IN ('buy', 'sell')", name="orders_side_check"),
)
Index("orders_status_created", orders.c.status, orders.c.created_at, orders.c.id)
Index("orders_created", orders.c.created_at, orders.c.id)
Index("orders_venue_created", orders.c.selected_dex, orders.c.created_at, orders.c.id)
# GET /api/orders is per account, newest first: with no filter, a status, or a type.
Index("orders_account_created", orders.c.account_id, orders.c.created_at, orders.c.id)
Index("orders_account_status_created", orders.c.account_id, orders.c.status, orders.c.created_at, orders.c.id)
Index("orders_account_type_created", orders.c.account_id, orders.c.type, orders.c.created_at, orders.c.id)
Index("orders_account_open", orders.c.account_id, postgresql_where=text(OPEN_ORDERS))

order_events = Table(
    "order_events",
    metadata,
    Column("order_id", _UUID, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("event_id", _UUID, nullable=False),
    Column("type", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("occurred_at", _TIME, nullable=False),
    Column("topic", Text, nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    # sql/0002: the envelope's last two fields, so a row gives its event back exactly as the log has it
    Column("causation_id", _UUID),
    Column("schema_version", Integer, nullable=False, server_default=text("1")),
    PrimaryKeyConstraint("order_id", "seq", name="order_events_pkey"),
)

projector_positions = Table(
    "projector_positions",
    metadata,
    Column("projection", Text, nullable=False),
    Column("topic", Text, nullable=False),
    Column("partition", Integer, nullable=False),
    Column("next_offset", BigInteger, nullable=False),
    Column("updated_at", _TIME, nullable=False, server_default=text("now()")),
    # sql/0002: what the projector last saw of the log's end, and when
    Column("end_offset", BigInteger),
    Column("checked_at", _TIME),
    PrimaryKeyConstraint("projection", "topic", "partition", name="projector_positions_pkey"),
)

projector_dead_letters = Table(
    "projector_dead_letters",
    metadata,
    Column("projection", Text, nullable=False),
    Column("topic", Text, nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("raw", LargeBinary),
    Column("recorded_at", _TIME, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("projection", "topic", "partition", "offset", name="projector_dead_letters_pkey"),
)
