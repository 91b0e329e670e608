"""A log file of bounded size: what a supervised process writes to its pipe lands here, rotated by size.

`<name>.log` grows to `max_bytes`, then becomes `<name>.log.1` (the older ones shift to .2 .. .N, the oldest
is deleted), so a service's log never takes more than (N + 1) x max_bytes. Files are cut at line ends; only a
single line longer than a whole file is cut inside.
"""

from __future__ import annotations

import os
from pathlib import Path


def split_for_rotation(size: int, chunk: bytes, max_bytes: int) -> list[bytes]:
    """Cut `chunk` for a file now `size` bytes long: the first piece goes to that file (it may be empty),
    each further piece starts a new file after a rotation. No file passes `max_bytes`."""
    if max_bytes < 1:
        raise ValueError("max_bytes must be positive")
    pieces: list[bytes] = []
    room, fresh = max_bytes - size, size == 0
    while len(chunk) > room:
        cut = chunk.rfind(b"\n", 0, max(room, 0)) + 1
        if cut == 0 and fresh:
            cut = room  # one line longer than a whole file: cut inside it
        pieces.append(chunk[:cut])
        chunk = chunk[cut:]
        room, fresh = max_bytes, True
    pieces.append(chunk)
    return pieces


class RotatingLog:
    """Append-only, size-rotated; every write goes straight to the OS (no buffer to lose on a crash)."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        if backups < 1:
            raise ValueError("keep at least one rotated file")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab", buffering=0)
        self.size = self._file.tell()

    def write(self, data: bytes) -> None:
        for i, piece in enumerate(split_for_rotation(self.size, data, self.max_bytes)):
            if i:
                self.rotate()
            if piece:
                self._file.write(piece)
                self.size += len(piece)

    def rotate(self) -> None:
        self._file.close()
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        if self.path.exists():  # someone may have moved it away (logrotate, a person)
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._file = open(self.path, "ab", buffering=0)
        self.size = 0

    def close(self) -> None:
        self._file.close()
