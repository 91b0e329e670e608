"""Durable Idempotency-Keys in PostgreSQL (`oee_state.idempotency_keys`): one row per (account, key).

A keyed request first *claims* its key: one statement inserts the row (order id, request fingerprint, a
claim token and a lease), or takes over a row whose earlier attempt ended without an acknowledgement (its
lease ran out, or its outcome was unknown) provided the body is the same. Whoever does not get the claim
reads the row: another body is `KeyReused` (422), an acknowledged one is replayed (its position), one still
in flight is `KeyInFlight` (409), in this process or any other.

After the publish: acknowledged -> `complete` stores the position; certainly not written -> `release`
deletes the row (a retry starts afresh, with any body); outcome unknown -> `abandon` ends the lease but keeps
the body, so only the same request may retry (same order id: the router keeps the first OrderRequested).

The database down (or slower than `timeout_s`) is `StoreUnavailable` for a claim: the ingress answers 503
rather than accept what it cannot check. The other three only log: the order's fate is already decided.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass

import asyncpg

from services.ingress.idempotency import KeyInFlight, KeyReused
from services.ingress.publisher import Position

log = logging.getLogger("oee.ingress.keys")

_CLAIM = """
WITH claimed AS (
    INSERT INTO oee_state.idempotency_keys AS k (account, key, order_id, fingerprint, claim, claimed_until)
    VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
    ON CONFLICT (account, key) DO UPDATE
        SET claim = EXCLUDED.claim, claimed_until = EXCLUDED.claimed_until
        WHERE k.acknowledged_at IS NULL AND k.claimed_until <= now() AND k.fingerprint = EXCLUDED.fingerprint
    RETURNING claim
)
SELECT (SELECT claim FROM claimed) AS claim, k.fingerprint, k.topic, k.partition, k."offset",
       k.acknowledged_at IS NOT NULL AS acknowledged
FROM (SELECT 1) AS one
LEFT JOIN oee_state.idempotency_keys k ON k.account = $1 AND k.key = $2
"""
_COMPLETE = """
UPDATE oee_state.idempotency_keys
SET topic = $4, partition = $5, "offset" = $6, acknowledged_at = now(), claim = NULL, claimed_until = NULL
WHERE account = $1 AND key = $2 AND claim = $3
"""
_RELEASE = (
    "DELETE FROM oee_state.idempotency_keys"
    " WHERE account = $1 AND key = $2 AND claim = $3 AND acknowledged_at IS NULL"
)
_ABANDON = (
    "UPDATE oee_state.idempotency_keys SET claimed_until = now()"
    " WHERE account = $1 AND key = $2 AND claim = $3 AND acknowledged_at IS NULL"
)


class StoreUnavailable(Exception):
    """The key could not be checked: the database did not answer in time."""


@dataclass(frozen=True, slots=True)
class Claim:
    """This attempt holds the key until it completes, releases or abandons it (or its lease ends)."""

    account: str
    key: str
    token: uuid.UUID


class DurableKeys:
    def __init__(self, pool: asyncpg.Pool, *, lease_s: float = 15.0, timeout_s: float = 2.0) -> None:
        self._pool = pool
        self.lease_s = lease_s
        self.timeout_s = timeout_s

    async def claim(self, account: str, key: str, order_id: str, fingerprint: str) -> Claim | Position:
        """Claim the key for this request, or the position of its acknowledged first request (a replay)."""
        token = uuid.uuid4()
        for _ in range(3):  # the row can vanish between the insert and the read (a release): try again
            try:
                async with asyncio.timeout(self.timeout_s):
                    row = await self._pool.fetchrow(
                        _CLAIM, account, key, order_id, fingerprint, token, self.lease_s
                    )
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise StoreUnavailable(f"idempotency keys unavailable: {exc!r}") from exc
            assert row is not None
            if row["claim"] == token:
                return Claim(account, key, token)
            if row["fingerprint"] is None:
                continue
            if row["fingerprint"] != fingerprint:
                raise KeyReused
            if row["acknowledged"]:
                return Position(row["topic"], row["partition"], row["offset"])
            raise KeyInFlight
        raise KeyInFlight

    async def complete(self, claim: Claim, position: Position) -> None:
        """The broker acknowledged: repeats of the key replay this position from now on."""
        await self._quietly(
            "complete",
            _COMPLETE,
            claim.account,
            claim.key,
            claim.token,
            position.topic,
            position.partition,
            position.offset,
        )

    async def release(self, claim: Claim) -> None:
        """Nothing was written: forget the key, so a retry (with any body) runs afresh."""
        await self._quietly("release", _RELEASE, claim.account, claim.key, claim.token)

    async def abandon(self, claim: Claim) -> None:
        """The outcome is unknown: keep the body, end the lease, so the same request may retry at once."""
        await self._quietly("abandon", _ABANDON, claim.account, claim.key, claim.token)

    async def _quietly(self, what: str, sql: str, *args: object) -> None:
        # The order's fate is decided (in the log or not); a failed write here only costs a retry its
        # replay: the lease runs out and the same body takes over (same order id, dropped by the router).
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._pool.execute(sql, *args)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("idempotency key %s not recorded (its lease will expire): %r", what, exc)
