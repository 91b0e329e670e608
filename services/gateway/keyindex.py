"""Which order ids have events in which stretch of a partition below the tail's window. Pure.

Looking up an order the gateway never saw (a client subscribing to an id the log may or may not hold) once
meant reading up to a look-back of its partition, per subscription: a thousand subscriptions to random ids
read a thousand look-backs. The index records, per chunk of offsets read, the hashes of the keys found
there, so a partition is read once (and after that only what the tail's window has left behind since), and
a look-up is a membership test per chunk: an id found in none has no event there, and one found in some is
read back from those chunks only. A hash collision costs a read that finds nothing, never a wrong answer.

Each partition's chunks are contiguous and ascending, and cover at most `span` offsets (older chunks are
dropped as newer ones come), so memory is bounded by `span` keys per partition.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KeyIndex"]


@dataclass(frozen=True, slots=True)
class _Chunk:
    lo: int
    hi: int  # offsets [lo, hi) were read
    keys: frozenset[int]  # hash() of each record key there


class KeyIndex:
    def __init__(self, span: int) -> None:
        self.span = span
        self._chunks: dict[int, list[_Chunk]] = {}

    def covered(self, partition: int) -> tuple[int, int] | None:
        """The offsets [lo, hi) of `partition` the index holds, or None."""
        chunks = self._chunks.get(partition)
        if not chunks:
            return None
        return chunks[0].lo, chunks[-1].hi

    def add(self, partition: int, lo: int, hi: int, keys: set[int]) -> None:
        """Record what offsets [lo, hi) hold. They must continue the partition's stretch (or start one: a
        chunk that does not continue it replaces it)."""
        if hi <= lo:
            return
        chunks = self._chunks.setdefault(partition, [])
        if chunks and chunks[-1].hi != lo:
            chunks.clear()
        chunks.append(_Chunk(lo, hi, frozenset(keys)))
        while chunks and chunks[0].hi <= hi - self.span:
            chunks.pop(0)

    def stretches(self, partition: int, key: bytes, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of [start, end) that may hold `key`: the indexed chunks that have it, and whatever of
        the range the index does not hold (which only reading can tell)."""
        out: list[tuple[int, int]] = []
        covered = self.covered(partition)
        if covered is None:
            return [(start, end)] if start < end else []
        lo, hi = covered
        if start < min(lo, end):
            out.append((start, min(lo, end)))
        h = hash(key)
        for chunk in self._chunks[partition]:
            a, b = max(chunk.lo, start), min(chunk.hi, end)
            if a < b and h in chunk.keys:
                out.append((a, b))
        if max(hi, start) < end:
            out.append((max(hi, start), end))
        return out

    def keys(self) -> int:
        """How many keys are held, all partitions together (what the index costs)."""
        return sum(len(c.keys) for chunks in self._chunks.values() for c in chunks)
