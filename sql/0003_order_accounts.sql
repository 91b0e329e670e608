-- Every order belongs to the account that placed it (OrderRequested v2's account_id; v1 events read as
-- 'local'). Rows projected before this migration all came from v1 events, hence the default.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS account_id text NOT NULL DEFAULT 'local';

-- GET /api/orders is per account: newest first, with or without a status filter.
CREATE INDEX IF NOT EXISTS orders_account_created ON orders (account_id, created_at, id);
CREATE INDEX IF NOT EXISTS orders_account_status_created ON orders (account_id, status, created_at, id);
-- The open-orders limit counts these per account (index-only, small: finished orders are not in it).
CREATE INDEX IF NOT EXISTS orders_account_open ON orders (account_id) WHERE status NOT IN ('confirmed', 'failed');
