"""A one-line progress display for long replays: events done, events/s, ETA. Only on a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Redraws `label done/total events  rate ev/s  ETA` at most every `every_s`, when `stream` is a TTY."""

    def __init__(
        self, total: int, label: str = "rebuild", stream: TextIO | None = None, every_s: float = 0.5
    ) -> None:
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self.every_s = every_s
        self.started = time.monotonic()
        self.done = 0
        self._shown_at = 0.0
        self._window: tuple[float, int] = (self.started, 0)

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if not self.enabled or now - self._shown_at < self.every_s:
            return
        at, was = self._window
        rate = (done - was) / (now - at) if now > at else 0.0
        self._window = (now, done)
        self._shown_at = now
        eta = _clock((self.total - done) / rate) if rate > 0 else "?"
        pct = 100.0 * done / self.total if self.total else 100.0
        line = f"{self.label}  {done:,}/{self.total:,} events ({pct:.0f}%)  {rate:,.0f} events/s  ETA {eta}"
        self.stream.write("\r" + line.ljust(80))
        self.stream.flush()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 80 + "\r")
            self.stream.flush()
