"""Service logs of bounded size: cut at line ends, rotated to .1 .. .N, the oldest dropped."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.stack.rotating_log import RotatingLog, split_for_rotation


def test_what_fits_goes_to_the_current_file() -> None:
    assert split_for_rotation(0, b"a\nb\n", 10) == [b"a\nb\n"]
    assert split_for_rotation(6, b"a\nb\n", 10) == [b"a\nb\n"]


def test_a_chunk_that_does_not_fit_is_cut_at_a_line_end() -> None:
    assert split_for_rotation(6, b"aa\nbb\ncc\n", 10) == [b"aa\n", b"bb\ncc\n"]


def test_no_line_end_within_the_room_rotates_first() -> None:
    assert split_for_rotation(8, b"aaaa\n", 10) == [b"", b"aaaa\n"]


def test_a_line_longer_than_a_whole_file_is_cut_inside() -> None:
    assert split_for_rotation(0, b"x" * 25, 10) == [b"x" * 10, b"x" * 10, b"x" * 5]
    assert split_for_rotation(3, b"x" * 12, 10) == [b"", b"x" * 10, b"xx"]


def test_a_file_already_over_the_limit_rotates_before_writing() -> None:
    assert split_for_rotation(50, b"a\n", 10) == [b"", b"a\n"]


@pytest.mark.parametrize("size", [0, 1, 7, 99])
def test_every_piece_fits_and_nothing_is_lost(size: int) -> None:
    chunk = b"".join(f"line {i} {'x' * (i % 13)}\n".encode() for i in range(200))
    pieces = split_for_rotation(size, chunk, 64)
    assert b"".join(pieces) == chunk
    assert size + len(pieces[0]) <= max(64, size) and all(len(p) <= 64 for p in pieces[1:])


def test_rotation_keeps_n_backups_newest_first(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "router.log"
    log = RotatingLog(path, max_bytes=100, backups=3)
    lines = [f"{i:04d} {'y' * 40}\n".encode() for i in range(40)]  # 46 bytes each: two per file
    for line in lines:
        log.write(line)
    log.close()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["router.log", "router.log.1", "router.log.2", "router.log.3"]
    assert all(p.stat().st_size <= 100 for p in path.parent.iterdir())
    kept = b"".join(
        (path.parent / n).read_bytes() for n in ("router.log.3", "router.log.2", "router.log.1", "router.log")
    )
    assert kept == b"".join(lines[-len(kept) // 46 :]), "the newest lines, in order, none cut"


def test_reopening_continues_the_file_and_its_size(tmp_path: Path) -> None:
    path = tmp_path / "api.log"
    first = RotatingLog(path, max_bytes=30, backups=1)
    first.write(b"0123456789\n")
    first.close()
    again = RotatingLog(path, max_bytes=30, backups=1)
    assert again.size == 11
    again.write(b"abcdefghij\nabcdefghij\n")
    again.close()
    assert path.with_name("api.log.1").read_bytes() == b"0123456789\nabcdefghij\n"
    assert path.read_bytes() == b"abcdefghij\n"
