"""The ledger's journal: durable before applied, group commit, a failed write leaves no trace, torn tails cut.

The disk is real (a file in tmp_path, or /dev/full); `tests.venue_disk.Disk` counts its writes, fills it up
on demand (ENOSPC after a torn half) or holds a write until the test lets it go.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.venue.journal import Journal, JournalError, OsFile, read_lines
from tests.venue_disk import Disk


def lines(path: Path) -> list[bytes]:
    return [raw for _, raw in read_lines(path)]


async def test_appends_of_one_turn_share_one_write_and_apply_after_it(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    disk = Disk(path)
    journal = Journal(disk)
    applied: list[int] = []

    def apply(n: int) -> int:
        assert path.read_bytes().count(b"\n") >= n + 1, "applied before its line was on disk"
        applied.append(n)
        return n * 10

    futures = [journal.append(b'{"n": %d}\n' % n, lambda n=n: apply(n)) for n in range(50)]
    assert applied == []  # nothing happens before the write
    assert await asyncio.gather(*futures) == [n * 10 for n in range(50)]
    assert applied == list(range(50)) and len(disk.writes) == 1
    await journal.aclose()
    assert len(lines(path)) == 50


async def test_appends_made_during_a_write_go_in_the_next_one(tmp_path: Path) -> None:
    disk = Disk(tmp_path / "j.jsonl")
    journal = Journal(disk)
    disk.gate.clear()
    first = journal.append(b"1\n", lambda: 1)
    await asyncio.to_thread(disk.writing.wait, 10)  # the first write is in flight, held
    later = [journal.append(b"%d\n" % n, lambda n=n: n) for n in range(2, 30)]
    assert journal.backlog == 28
    disk.gate.set()
    assert await first == 1 and await asyncio.gather(*later) == list(range(2, 30))
    assert [w.count(b"\n") for w in disk.writes] == [1, 28]
    await journal.aclose()


async def test_a_failed_write_applies_nothing_and_leaves_no_trace(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    disk = Disk(path)
    journal = Journal(disk)
    await journal.append(b"good\n", lambda: None)
    disk.full = True
    applied: list[str] = []
    failed = [journal.append(b"lost-%d\n" % n, lambda: applied.append("x")) for n in range(3)]
    outcomes = await asyncio.gather(*failed, return_exceptions=True)
    assert all(isinstance(o, JournalError) and "ENOSPC" in str(o) for o in outcomes), outcomes
    assert len({id(o) for o in outcomes}) == 3  # one error each
    assert applied == [] and path.read_bytes() == b"good\n"  # the torn half was cut off again
    disk.full = False  # the disk is back: the journal carries on
    assert await journal.append(b"after\n", lambda: "ok") == "ok"
    await journal.aclose()
    assert lines(path) == [b"good\n", b"after\n"]


async def test_when_even_the_cut_fails_the_next_write_cuts_first(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    disk = Disk(path)
    journal = Journal(disk)
    await journal.append(b"good\n", lambda: None)
    disk.full = disk.truncate_fails = True
    with pytest.raises(JournalError):
        await journal.append(b"lost-lost-lost\n", lambda: None)
    assert path.read_bytes().startswith(b"good\nlost")  # the torn half is still there...
    with pytest.raises(JournalError, match="EIO"):  # ...and nothing goes after it while it is
        await journal.append(b"refused\n", lambda: None)
    disk.full = disk.truncate_fails = False
    await journal.append(b"after\n", lambda: None)
    await journal.aclose()
    assert path.read_bytes() == b"good\nafter\n"


async def test_a_caller_that_stops_waiting_does_not_stop_the_apply(tmp_path: Path) -> None:
    disk = Disk(tmp_path / "j.jsonl")
    journal = Journal(disk)
    disk.gate.clear()
    applied = asyncio.Event()
    waiter = asyncio.create_task(asyncio.wait_for(journal.append(b"x\n", applied.set), 0.01))
    with pytest.raises(TimeoutError):
        await waiter
    disk.gate.set()
    await asyncio.wait_for(applied.wait(), 10)  # durable, so applied: memory follows the journal
    await journal.aclose()


async def test_a_journal_on_dev_full_refuses_every_write() -> None:
    journal = Journal(OsFile(Path("/dev/full")), "full")
    with pytest.raises(JournalError, match="ENOSPC"):
        await journal.append(b"x\n", lambda: None)
    with pytest.raises(JournalError, match="ENOSPC"):
        await journal.append(b"y\n", lambda: None)
    await journal.aclose()


async def test_a_torn_last_line_is_skipped_and_cut_so_the_next_append_starts_clean(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": 2}\n{"c": 3, "tor')
    assert lines(path) == [b'{"a": 1}\n', b'{"b": 2}\n']
    assert path.read_bytes() == b'{"a": 1}\n{"b": 2}\n'
    journal = Journal(OsFile(path))
    await journal.append(b'{"d": 4}\n', lambda: None)
    await journal.aclose()
    assert lines(path) == [b'{"a": 1}\n', b'{"b": 2}\n', b'{"d": 4}\n']


def test_a_file_without_any_newline_is_all_torn(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(b"x" * 200_000)  # longer than the block the tail is searched in
    assert lines(path) == [] and path.read_bytes() == b""
    assert lines(tmp_path / "missing.jsonl") == [] and lines(Path("/dev/null")) == []
