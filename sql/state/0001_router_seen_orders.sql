-- Every order id the router has admitted, forever: the durable half of "one lifecycle per order id"
-- (docs/decisions/0008). Written before the Kafka transaction that starts the order; never derived from the
-- log, never rebuilt. `scope` is the intake topic's name (one table serves every topic prefix), and the intake
-- (partition, offset) of the admitting record tells a re-read of that record (after an aborted transaction:
-- proceed) from another request for the same id (a duplicate: ignored).
CREATE TABLE IF NOT EXISTS router_seen_orders (
    scope             text        NOT NULL,
    order_id          uuid        NOT NULL,
    intake_partition  integer     NOT NULL,
    intake_offset     bigint      NOT NULL,
    admitted_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, order_id)
);
