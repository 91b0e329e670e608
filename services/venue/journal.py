"""The ledger's journal: JSON lines made durable *before* the venue acts on them, with group commit.

The fsync policy (decision 0009): a record is on disk (`write` + `fdatasync`) before anything in memory,
in the pools or in anyone's view changes because of it. Records appended in the same event-loop turn share
one write and one `fdatasync` (group commit), made on a thread of the journal's own so the event loop keeps
serving quotes and statuses meanwhile; records appended while a write is in flight go in the next one. Under
load a batch is therefore whatever arrived during the previous sync, and a swap costs a fraction of one.

`append(lines, apply)` runs `apply()` once its lines are durable, in append order, whatever became of the
caller (a cancelled HTTP request does not leave a journaled swap out of memory). If the write fails (ENOSPC,
EIO) the batch's futures get `JournalError`, `apply` is not run, and the file is cut back to its last durable
size so a record the venue refused never reappears on replay; if even that cut fails, the journal stays
"dirty" and cuts again before its next write.

`read_lines` replays a journal: complete lines only. A torn last line (a crash mid-write: no newline) was
never acknowledged, so it is dropped and cut off the file, and the next append starts on a clean line.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class JournalError(Exception):
    """The journal could not make a record durable: nothing it carried happened."""


class JournalFile(Protocol):
    """The few file operations the journal needs (tests substitute a disk that fills up)."""

    def write(self, data: bytes) -> None:
        """Append all of `data` or raise OSError."""
        ...

    def sync(self) -> None:
        """Make every byte written so far durable, or raise OSError."""
        ...

    def truncate(self, size: int) -> None:
        """Cut the file back to `size` bytes, durably, or raise OSError."""
        ...

    def size(self) -> int: ...

    def close(self) -> None: ...


class OsFile:
    """A journal file opened for appending. On a device (`/dev/full`, `/dev/null`) sync and truncate do
    nothing: there is no page cache to flush or length to cut, and the kernel refuses both there."""

    def __init__(self, path: Path) -> None:
        created = not path.exists()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
        if created:  # the new file's name must survive a crash too, not only its contents
            _sync_directory(path.parent)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def sync(self) -> None:
        if self._regular:
            os.fdatasync(self._fd)

    def truncate(self, size: int) -> None:
        if self._regular:
            os.ftruncate(self._fd, size)
            os.fdatasync(self._fd)

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def close(self) -> None:
        if self._fd >= 0:  # twice would close whatever file reused the number
            fd, self._fd = self._fd, -1
            os.close(fd)


def _sync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """Group-committed appends to one `JournalFile`; see the module docstring for the guarantees."""

    def __init__(self, file: JournalFile, name: str = "journal") -> None:
        self._file = file
        self._name = name
        self._durable = file.size()  # bytes known to be on disk: where a failed write is cut back to
        self._dirty = False  # a failed write could not be cut back yet
        self._queue: list[tuple[bytes, Callable[[], Any], asyncio.Future[Any]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"journal-{name}")
        self._closed = False

    @property
    def backlog(self) -> int:
        """Appends waiting for a write (the one in flight excluded)."""
        return len(self._queue)

    def append(self, lines: bytes, apply: Callable[[], T]) -> asyncio.Future[T]:
        """Make `lines` (whole JSON lines) durable, then run `apply()`; the future has its result or
        `JournalError`. Cancelling the future does not stop the write or `apply`."""
        if self._closed:
            raise JournalError(f"{self._name}: journal closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((lines, apply, future))
        if self._writer is None:  # it starts next turn: everything appended in this turn goes with it
            self._writer = loop.create_task(self._drain(), name=f"{self._name}-writer")
        return future

    async def aclose(self) -> None:
        """Finish the writes already appended, then close the file (once, however often it is called)."""
        already, self._closed = self._closed, True
        while self._writer is not None:
            await asyncio.shield(self._writer)
        if not already:
            self._executor.shutdown(wait=True)
            self._file.close()

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                data = b"".join(lines for lines, _, _ in batch)
                try:
                    await loop.run_in_executor(self._executor, self._write, data)
                except OSError as exc:
                    reason = (
                        f"journal write failed ({errno.errorcode.get(exc.errno or 0, 'EIO')}: {exc.strerror})"
                    )
                    log.error("%s: %s; %d records not written", self._name, reason, len(batch))
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(JournalError(reason))  # one each: no shared traceback
                    continue
                for _, apply, future in batch:
                    try:
                        result = apply()
                    except Exception as exc:  # a bug in one apply must not strand the others
                        log.exception("%s: applying a durable record failed", self._name)
                        if not future.done():
                            future.set_exception(exc)
                        continue
                    if not future.done():
                        future.set_result(result)
        finally:
            self._writer = None

    def _write(self, data: bytes) -> None:
        """On the journal's thread: append and sync, or leave the file as it was and raise."""
        if self._dirty:
            self._file.truncate(self._durable)
            self._dirty = False
        try:
            self._file.write(data)
            self._file.sync()
        except OSError:
            try:
                self._file.truncate(self._durable)
            except OSError:
                self._dirty = True
            raise
        self._durable += len(data)


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line) for every complete line of a journal file, after cutting a torn last line off
    the file. Nothing is read from a path that is not a regular file (a device has nothing to replay)."""
    if not path.is_file():
        return
    _cut_torn_tail(path)
    with path.open("rb") as f:
        yield from enumerate(f, 1)


def _cut_torn_tail(path: Path, block: int = 1 << 16) -> None:
    """Truncate the file just after its last newline (to 0 if it has none)."""
    with path.open("r+b") as f:
        size = end = f.seek(0, os.SEEK_END)
        while end > 0:
            start = max(0, end - block)
            f.seek(start)
            newline = f.read(end - start).rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        if end < size:
            log.warning("journal %s: torn last line (%d bytes) dropped", path, size - end)
            f.truncate(end)
            os.fsync(f.fileno())
