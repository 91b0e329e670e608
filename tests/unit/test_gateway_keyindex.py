"""The key index of the gateway's log searches: what it holds, what a look-up must still read."""

from __future__ import annotations

from services.gateway.keyindex import KeyIndex


def keys(*ids: str) -> set[int]:
    return {hash(i.encode()) for i in ids}


def test_an_empty_index_leaves_everything_to_read() -> None:
    index = KeyIndex(span=100)
    assert index.covered(0) is None
    assert index.stretches(0, b"a", 10, 50) == [(10, 50)]
    assert index.stretches(0, b"a", 50, 50) == []


def test_only_the_chunks_holding_the_key_are_read() -> None:
    index = KeyIndex(span=100)
    index.add(3, 0, 10, keys("a", "b"))
    index.add(3, 10, 20, keys("c"))
    index.add(3, 20, 30, keys("a"))
    assert index.covered(3) == (0, 30)
    assert index.stretches(3, b"a", 0, 30) == [(0, 10), (20, 30)]
    assert index.stretches(3, b"c", 5, 25) == [(10, 20)]
    assert index.stretches(3, b"never", 0, 30) == []  # a random id costs no read at all
    assert index.stretches(4, b"a", 0, 30) == [(0, 30)]  # other partitions are not indexed
    assert index.keys() == 4


def test_what_the_index_does_not_hold_is_read() -> None:
    index = KeyIndex(span=100)
    index.add(0, 40, 60, keys("a"))
    assert index.stretches(0, b"zz", 20, 80) == [(20, 40), (60, 80)]
    assert index.stretches(0, b"a", 20, 50) == [(20, 40), (40, 50)]


def test_the_span_bounds_what_is_kept_and_a_jump_starts_over() -> None:
    index = KeyIndex(span=25)
    for lo in range(0, 50, 10):
        index.add(1, lo, lo + 10, keys(f"k{lo}"))
    assert index.covered(1) == (20, 50)  # chunks wholly older than 50 - 25 are dropped
    assert index.keys() == 3
    index.add(1, 80, 90, keys("late"))  # does not continue the stretch: replaces it
    assert index.covered(1) == (80, 90) and index.keys() == 1
    index.add(1, 90, 90, keys("empty"))  # an empty range changes nothing
    assert index.covered(1) == (80, 90)
