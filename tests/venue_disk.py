"""A real journal file whose disk can fill up or stall on demand: the venue's durability tests' one fault.

Writes go to the real file; with `full` set a write puts half its bytes down and then raises ENOSPC (a disk
filling mid-batch), with `truncate_fails` the journal cannot cut that half off again (EIO), and clearing
`gate` holds every write until the test sets it (a slow disk: what happens while a write is in flight).
"""

from __future__ import annotations

import errno
import threading
from pathlib import Path

from services.venue.journal import OsFile


class Disk(OsFile):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes: list[bytes] = []
        self.full = False
        self.truncate_fails = False
        self.gate = threading.Event()
        self.gate.set()
        self.writing = threading.Event()  # set once a write has started (and is perhaps held)

    def write(self, data: bytes) -> None:
        self.writing.set()
        self.gate.wait(30)
        if self.full:
            super().write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        self.writes.append(data)
        super().write(data)

    def truncate(self, size: int) -> None:
        if self.truncate_fails:
            raise OSError(errno.EIO, "Input/output error")
        super().truncate(size)


class Disks:
    """An `open_file` for `Ledger`: one `Disk` per journal path, kept for the test to turn the knobs."""

    def __init__(self) -> None:
        self.by_name: dict[str, Disk] = {}

    def __call__(self, path: Path) -> Disk:
        disk = self.by_name[path.name] = Disk(path)
        return disk

    def __getitem__(self, name: str) -> Disk:
        return self.by_name[name]
