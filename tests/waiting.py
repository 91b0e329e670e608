"""Waiting in tests: on a condition, with a deadline, never a bare sleep as synchronisation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def until(predicate: Callable[[], Any], timeout: float, what: str, every_s: float = 0.02) -> None:
    """Return once `predicate()` is true, checking every `every_s`; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(every_s)
