"""The Idempotency-Key store, driven by a fake clock: replay, conflicts, release, TTL and the size bound."""

from __future__ import annotations

import pytest

from services.ingress.idempotency import IdempotencyStore, KeyInFlight, KeyReused

DAY = 86_400.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_first_use_reserves_then_replays_the_stored_outcome(clock: Clock) -> None:
    store: IdempotencyStore[str] = IdempotencyStore(clock=clock)
    assert store.begin("k", "h1") is None
    store.complete("k", "answer")
    assert store.begin("k", "h1") == "answer"
    assert store.begin("k", "h1") == "answer"


def test_a_repeat_while_in_flight_is_a_conflict(clock: Clock) -> None:
    store: IdempotencyStore[str] = IdempotencyStore(clock=clock)
    store.begin("k", "h1")
    with pytest.raises(KeyInFlight):
        store.begin("k", "h1")


def test_another_request_with_the_key_is_refused_in_flight_or_done(clock: Clock) -> None:
    store: IdempotencyStore[str] = IdempotencyStore(clock=clock)
    store.begin("k", "h1")
    with pytest.raises(KeyReused):
        store.begin("k", "h2")
    store.complete("k", "answer")
    with pytest.raises(KeyReused):
        store.begin("k", "h2")


def test_release_lets_a_retry_run_again_but_never_drops_a_done_key(clock: Clock) -> None:
    store: IdempotencyStore[str] = IdempotencyStore(clock=clock)
    store.begin("k", "h1")
    store.release("k")
    assert store.begin("k", "h2") is None  # forgotten entirely: even another body may use it now
    store.complete("k", "answer")
    store.release("k")
    assert store.begin("k", "h2") == "answer"


def test_keys_are_kept_for_the_ttl_and_then_forgotten(clock: Clock) -> None:
    store: IdempotencyStore[str] = IdempotencyStore(ttl=DAY, clock=clock)
    store.begin("old", "h")
    store.complete("old", "first")
    clock.now += DAY - 1
    assert store.begin("old", "h") == "first"
    with pytest.raises(KeyReused):
        store.begin("old", "other")
    clock.now += 1
    assert store.begin("old", "other") is None  # expired: a new first use
    assert len(store) == 1


def test_expired_keys_are_swept_when_new_ones_arrive(clock: Clock) -> None:
    store: IdempotencyStore[str] = IdempotencyStore(ttl=10, clock=clock)
    for i in range(5):
        store.begin(f"k{i}", "h")
        store.complete(f"k{i}", "v")
    clock.now += 10
    store.begin("fresh", "h")
    assert len(store) == 1


def test_the_oldest_done_keys_make_room_and_in_flight_ones_stay(clock: Clock) -> None:
    store: IdempotencyStore[str] = IdempotencyStore(max_keys=3, clock=clock)
    store.begin("inflight", "h")
    for key in ("a", "b"):
        store.begin(key, "h")
        store.complete(key, key)
    store.begin("c", "h")  # full: "a" (oldest done) goes, the in-flight key stays
    assert len(store) == 3
    with pytest.raises(KeyInFlight):
        store.begin("inflight", "h")
    assert store.begin("b", "h") == "b"
    assert store.begin("a", "h") is None  # forgotten: a new first use (which evicts "b")


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        IdempotencyStore(ttl=0)
    with pytest.raises(ValueError):
        IdempotencyStore(max_keys=0)
