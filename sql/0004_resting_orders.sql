-- Limit and sniper orders (OrderRequested v3): what they rest on, and what fired them (OrderTriggered).
ALTER TABLE orders
    ADD COLUMN IF NOT EXISTS limit_price     double precision,
    ADD COLUMN IF NOT EXISTS max_price       double precision,
    ADD COLUMN IF NOT EXISTS min_liquidity   double precision,
    ADD COLUMN IF NOT EXISTS expires_at      timestamptz,
    ADD COLUMN IF NOT EXISTS trigger_price   double precision,
    ADD COLUMN IF NOT EXISTS trigger_venue   text,
    ADD COLUMN IF NOT EXISTS triggered_at    timestamptz;

-- GET /api/orders?type=limit (with or without a status): per account, newest first.
CREATE INDEX IF NOT EXISTS orders_account_type_created ON orders (account_id, type, created_at, id);

-- Two more terminal statuses (expired, cancelled): the open-orders count (`services.query.reads`) must not
-- count them, and its partial index must say the same as its query.
DROP INDEX IF EXISTS orders_account_open;
CREATE INDEX IF NOT EXISTS orders_account_open ON orders (account_id)
    WHERE status NOT IN ('cancelled', 'confirmed', 'expired', 'failed');
