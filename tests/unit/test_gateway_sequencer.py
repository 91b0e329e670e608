"""The gap-free merge: any order, any repeats in; seq order, once each, nothing skipped out."""

from __future__ import annotations

import random

import pytest

from services.gateway.frames import Item
from services.gateway.sequencer import Gap, Overflow, Sequencer

OID = "0b6f3e9a-2d1c-4f7e-9a53-8c1d2e4f5a6b"


def item(seq: int, terminal_at: int = 5, offset: int | None = None) -> Item:
    status = "confirmed" if seq == terminal_at else "routing"
    return Item(
        OID, seq, status, seq == terminal_at, 0, offset if offset is not None else 100 + seq, f"f{seq}"
    )


def drain(seq: Sequencer) -> list[int]:
    return [i.seq for i in seq.ready()]


def test_in_order_events_flow_through() -> None:
    seq = Sequencer()
    out = []
    for s in range(1, 6):
        seq.add(item(s))
        out += drain(seq)
    assert out == [1, 2, 3, 4, 5]
    assert seq.done and seq.gap() is None


def test_a_missing_seq_holds_back_what_follows_and_names_the_gap() -> None:
    seq = Sequencer()
    seq.add(item(1))
    seq.add(item(3))
    seq.add(item(4))
    assert drain(seq) == [1]
    gap = seq.gap()
    assert gap == Gap(2, item(3), item(1))  # search between offsets 101 and 103
    seq.add(item(2))
    assert drain(seq) == [2, 3, 4]
    assert seq.gap() is None and not seq.done


def test_duplicates_and_already_sent_seqs_are_dropped() -> None:
    seq = Sequencer()
    for s in (1, 1, 2):
        seq.add(item(s))
    assert drain(seq) == [1, 2]
    seq.add(item(2))
    seq.add(item(1))
    assert drain(seq) == []


def test_from_seq_skips_what_the_client_has_and_still_knows_the_end() -> None:
    seq = Sequencer(from_seq=3)
    for s in range(1, 6):
        seq.add(item(s))
    assert drain(seq) == [4, 5]
    finished = Sequencer(from_seq=5)
    for s in range(1, 6):
        finished.add(item(s))
    assert drain(finished) == [] and finished.done  # resumed after the end: nothing to send, complete


def test_nothing_known_yet() -> None:
    seq = Sequencer()
    assert not seq.known and seq.gap() is None and not seq.done
    assert seq.frontier() == Gap(1, None, None)


def test_frontier_points_after_the_newest_event_sent() -> None:
    seq = Sequencer()
    seq.add(item(1))
    seq.add(item(2))
    drain(seq)
    assert seq.frontier() == Gap(3, None, item(2))


def test_too_many_held_back_overflows() -> None:
    seq = Sequencer(limit=3)
    for s in (2, 3, 4):
        seq.add(item(s, terminal_at=99))
    with pytest.raises(Overflow):
        seq.add(item(5, terminal_at=99))


@pytest.mark.parametrize("seed", range(50))
def test_any_interleaving_of_sources_gives_one_contiguous_run(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 8)
    from_seq = rng.randint(0, n)
    sources = [[item(s, terminal_at=n) for s in range(1, n + 1) if rng.random() < 0.7] for _ in range(3)]
    sources.append([item(s, terminal_at=n) for s in range(1, n + 1)])  # the log has everything
    arrivals = [i for src in sources for i in src]
    rng.shuffle(arrivals)
    seq = Sequencer(from_seq)
    out: list[int] = []
    for arrival in arrivals:
        seq.add(arrival)
        out += drain(seq)
    assert out == list(range(from_seq + 1, n + 1))
    assert seq.done
