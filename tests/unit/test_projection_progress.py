"""The rebuild's progress line: drawn only on a terminal, with rate and ETA."""

from __future__ import annotations

import io

from projections.progress import Progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_nothing_is_drawn_when_not_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(100, stream=out, every_s=0)
    progress.update(50)
    progress.close()
    assert out.getvalue() == ""


def test_a_terminal_gets_done_total_rate_and_eta() -> None:
    out = Tty()
    progress = Progress(1000, "rebuild x", stream=out, every_s=0)
    progress.update(250)
    line = out.getvalue()
    assert line.startswith("\rrebuild x  250/1,000 events (25%)") and "events/s" in line and "ETA" in line
    progress.close()
    assert out.getvalue().endswith("\r")
