-- Read models built from the order event log. The log is the truth: every row here is derived from an event,
-- and dropping these tables and replaying the log rebuilds them.

-- Current state of each order (one row per order), with the position of the last event applied to it.
CREATE TABLE IF NOT EXISTS orders (
    id                    uuid PRIMARY KEY,
    type                  text        NOT NULL DEFAULT 'market',
    base_token            text        NOT NULL,
    quote_token           text        NOT NULL,
    side                  text        NOT NULL CHECK (side IN ('buy', 'sell')),
    amount_in             double precision NOT NULL,
    slippage_bps          integer     NOT NULL,
    status                text        NOT NULL,
    selected_dex          text,
    quotes                jsonb,
    min_acceptable_price  double precision,
    executed_price        double precision,
    amount_out            double precision,
    tx_hash               text,
    failure_reason        text,
    attempts              integer     NOT NULL DEFAULT 0,
    idempotency_key       text,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    last_seq              integer     NOT NULL,
    last_topic            text        NOT NULL,
    last_partition        integer     NOT NULL,
    last_offset           bigint      NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_status_created ON orders (status, created_at, id);
CREATE INDEX IF NOT EXISTS orders_created ON orders (created_at, id);

-- Every event, once: (order_id, seq) is the identity of an event in an order's stream.
CREATE TABLE IF NOT EXISTS order_events (
    order_id      uuid        NOT NULL,
    seq           integer     NOT NULL,
    event_id      uuid        NOT NULL,
    type          text        NOT NULL,
    status        text        NOT NULL,
    payload       jsonb       NOT NULL,
    occurred_at   timestamptz NOT NULL,
    topic         text        NOT NULL,
    partition     integer     NOT NULL,
    "offset"      bigint      NOT NULL,
    PRIMARY KEY (order_id, seq)
);

-- The projector's tracking records: per projection, topic and partition, the next offset to read.
-- Written in the same transaction as the rows above, so a restart neither loses nor double-applies.
CREATE TABLE IF NOT EXISTS projector_positions (
    projection   text    NOT NULL,
    topic        text    NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint  NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, topic, partition)
);

-- Records the projector could not decode or apply, with the reason; the stream keeps flowing past them.
CREATE TABLE IF NOT EXISTS projector_dead_letters (
    projection   text        NOT NULL,
    topic        text        NOT NULL,
    partition    integer     NOT NULL,
    "offset"     bigint      NOT NULL,
    reason       text        NOT NULL,
    raw          bytea,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, topic, partition, "offset")
);
