"""The verdicts of the durable record of admitted order ids (the store itself is tested against PostgreSQL in
tests/integration/test_router_admission.py; the in-memory one here keeps the same contract)."""

from __future__ import annotations

from collections.abc import Iterable

from services.router.admission import Candidate, InMemoryAdmissions, verdict


def ids(admitted: Iterable[Candidate]) -> set[str]:
    return {c.order_id for c in admitted}


def test_new_ids_and_the_same_record_read_again_start_other_records_do_not() -> None:
    candidates = [Candidate("new", 0, 5), Candidate("again", 1, 7), Candidate("dup", 1, 8)]
    recorded = {"new": (0, 5), "again": (1, 7), "dup": (0, 3)}
    assert ids(verdict(candidates, recorded)) == {"new", "again"}


async def test_the_in_memory_store_gives_the_same_verdicts() -> None:
    store = InMemoryAdmissions()
    assert ids(await store.admit("t", [Candidate("a", 0, 1), Candidate("b", 0, 2)])) == {"a", "b"}
    assert ids(await store.admit("t", [Candidate("a", 0, 1)])) == {
        "a"
    }  # re-read after an aborted transaction
    assert ids(await store.admit("t", [Candidate("a", 2, 9), Candidate("c", 0, 3)])) == {"c"}
    assert ids(await store.admit("other-topic", [Candidate("a", 2, 9)])) == {"a"}  # scopes are apart
    # One id under two keys (two partitions) in one batch: only the first starts.
    assert await store.admit("t", [Candidate("d", 0, 4), Candidate("d", 1, 4)]) == {Candidate("d", 0, 4)}
    assert ids(await store.admit("t", [Candidate("d", 1, 4)])) == set()
