"""Idempotency-Key bookkeeping in process: a bounded map from (account, key) to the request's fingerprint and
outcome, in front of the durable store (`services.ingress.keystore`).

Semantics (Stripe's, and the IETF draft "The Idempotency-Key HTTP Header Field"):

- the first request with a key reserves it (`begin` returns None) and later `complete`s it with its outcome,
  or `release`s it when it failed so that a retry runs again;
- a repeat with the same fingerprint gets the stored outcome back (`begin` returns it);
- a repeat with another fingerprint raises `KeyReused` (HTTP 422), whether the first is done or in flight;
- a repeat while the first is still in flight raises `KeyInFlight` (HTTP 409).

Bounds: a key is kept `ttl` seconds after it was first seen (default 24 h) unless `max_keys` newer keys push
it out first (oldest first; keys in flight are never evicted). This store is only a cache: it answers repeats
and concurrent duplicates of this process without a database round trip; what it forgot, the durable store
(PostgreSQL) still knows, in every process and after any restart. Single event loop: no locks needed.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class KeyInFlight(Exception):
    """The key's first request is still being processed."""


class KeyReused(Exception):
    """The key was used with a different request."""


class _Entry(Generic[V]):
    __slots__ = ("fingerprint", "seen_at", "value")

    def __init__(self, fingerprint: str, seen_at: float) -> None:
        self.fingerprint = fingerprint
        self.seen_at = seen_at
        self.value: V | None = None  # None while in flight


class IdempotencyStore(Generic[V]):
    def __init__(
        self, ttl: float = 86_400.0, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if ttl <= 0 or max_keys < 1:
            raise ValueError("ttl must be > 0 and max_keys >= 1")
        self._ttl = ttl
        self._max_keys = max_keys
        self._clock = clock
        self._entries: OrderedDict[Hashable, _Entry[V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def begin(self, key: Hashable, fingerprint: str) -> V | None:
        """The stored outcome for a repeat, or None when the caller now owns the key and must finish it."""
        now = self._clock()
        self._expire(now)
        entry = self._entries.get(key)
        if entry is not None and now - entry.seen_at >= self._ttl and entry.value is not None:
            del self._entries[key]
            entry = None
        if entry is not None:
            if entry.fingerprint != fingerprint:
                raise KeyReused
            if entry.value is None:
                raise KeyInFlight
            return entry.value
        self._make_room()
        self._entries[key] = _Entry(fingerprint, now)
        return None

    def complete(self, key: Hashable, value: V) -> None:
        """Store the outcome of the key's first request; repeats get it from now on."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.value = value

    def release(self, key: Hashable) -> None:
        """Forget a key whose request failed, so that a retry runs again (only while still in flight)."""
        entry = self._entries.get(key)
        if entry is not None and entry.value is None:
            del self._entries[key]

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            entry = next(iter(entries.values()))
            if now - entry.seen_at < self._ttl or entry.value is None:
                return
            entries.popitem(last=False)

    def _make_room(self) -> None:
        entries = self._entries
        for _ in range(len(entries)):
            if len(entries) < self._max_keys:
                return
            key, entry = entries.popitem(last=False)
            if entry.value is None:  # in flight: keep it, look at the next oldest
                entries[key] = entry
