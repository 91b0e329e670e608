"""Lifespans: what a part of an app opens before it serves and closes after, composed in order."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager

from starlette.applications import Starlette

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]
"""`lifespan(app)`: entered before the app serves, left after it stopped; resources go on `app.state`."""


def chain(lifespans: Sequence[Lifespan]) -> Lifespan:
    """One lifespan entering `lifespans` in order and leaving them in reverse (a failure while entering
    leaves the ones already entered)."""

    @contextlib.asynccontextmanager
    async def run(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for lifespan in lifespans:
                await stack.enter_async_context(lifespan(app))
            yield

    return run
