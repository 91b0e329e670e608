-- What the projector and the query API need beyond 0001 (which stays as applied: migrations are checksummed).

-- The rest of `events.lifecycle.OrderState`, so the projector resumes folding an order from its row alone.
ALTER TABLE orders
    ADD COLUMN IF NOT EXISTS last_event_id    uuid,
    ADD COLUMN IF NOT EXISTS route_reason     text,
    ADD COLUMN IF NOT EXISTS client_order_id  text,
    ADD COLUMN IF NOT EXISTS expected_price   double precision,
    ADD COLUMN IF NOT EXISTS failure_stage    text;

-- The venue filter of GET /api/orders, newest first (status and time already have their indexes).
CREATE INDEX IF NOT EXISTS orders_venue_created ON orders (selected_dex, created_at, id);

-- With these two, a row gives its event back exactly as the log has it (envelope + upcast payload).
ALTER TABLE order_events
    ADD COLUMN IF NOT EXISTS causation_id     uuid,
    ADD COLUMN IF NOT EXISTS schema_version   integer NOT NULL DEFAULT 1;

-- What the projector last saw of each partition: the log's end (last stable offset, as read_committed sees
-- it) and when it looked. Lag = end_offset - next_offset; an old checked_at means the projector is not running.
ALTER TABLE projector_positions
    ADD COLUMN IF NOT EXISTS end_offset       bigint,
    ADD COLUMN IF NOT EXISTS checked_at       timestamptz;
