-- Durable Idempotency-Keys (docs/decisions/0013): per account, the key names one order and one request body,
-- forever. Written by the ingress before it publishes (a claim with a lease) and after the broker
-- acknowledged (the position), so a restart, another API process or a crash never lets the same key start
-- a second order or be reused with another body.

CREATE TABLE IF NOT EXISTS idempotency_keys (
    account          text        NOT NULL,
    key              text        NOT NULL,
    order_id         uuid        NOT NULL,
    fingerprint      text        NOT NULL,       -- SHA-256 of the canonical request: another body is a 422
    created_at       timestamptz NOT NULL DEFAULT now(),
    claim            uuid,                       -- the attempt publishing under this key (while in flight)
    claimed_until    timestamptz,                -- its lease: past it (a crashed attempt) another may take over
    topic            text,                       -- where the acknowledged OrderRequested is: NULL until then
    partition        integer,
    "offset"         bigint,
    acknowledged_at  timestamptz,
    PRIMARY KEY (account, key)
);
