"""The venue as its own process: both simulated venues behind one small HTTP API.

Running the venue apart from the router is what makes P4 testable: the router can be SIGKILLed right after
a submit while the venue keeps its ledger, and the restarted router reconciles by client order id.

    POST /venues/{name}/quote                 {base, quote, side, amount_in}          -> VenueQuote
    POST /venues/{name}/submit                {client_order_id, base, quote, side, amount_in, limit_price,
                                               valid_until?}
                                                                                      -> SubmitReceipt
    GET  /venues/{name}/swaps/{id}                                                    -> SwapStatus
    POST /venues/{name}/quote:batch           {requests: [quote body, ...]}          -> {results: [item]}
    POST /venues/{name}/submit:batch          {requests: [submit body, ...]}         -> {results: [item]}
    POST /venues/{name}/swaps:batch-status    {client_order_ids: [...]}              -> {swaps: [SwapStatus]}
    POST /venues/{name}/pools                 {base, quote, base_reserve, quote_reserve} -> 201 the new pool
                                              (an operator listing a token or pair: behind VENUE_SECRET)
    GET  /venues/{name}/settlements           NDJSON stream: one SwapStatus per line as swaps settle
    GET  /venues/{name}/ledger                (inspection for tests: size, pending, max entries per id)
    GET  /health

Market data (pool states after walk steps, swaps and listings) goes to the market-data topic when the
app is given a sink (`oee venue` gives it the broker's), never over HTTP: see `services.venue.market`.

The settlement feed spares a router from polling thousands of pending swaps. It is a convenience, not a
record: a settlement made while nobody listens (a router restarting, a feed that fell behind and was cut)
is not replayed, so a router still reconciles what it submitted with `swaps:batch-status`.

Errors are `{"error": reason, "kind": ...}`: 503 `unavailable` (not served, retry: an outage, or a journal
write that failed, so nothing was accepted), 504 `outcome_unknown` (accepted but the reply is deliberately
lost: reconcile by status), 400 `rejected` (a bad request, or a quote or submit beyond a pool's bounds,
decision 0030: the reason names the limit), 404 unknown venue, 410 `expired` (a submit received after its
`valid_until`: never executed), 409 `conflict` (the client order id is taken by another swap: other
parameters, or the other venue), 401 `unauthorized` (no or wrong `Authorization: Bearer <VENUE_SECRET>`,
on every route but `/health` when a secret is set), 413 `too_large` (a body over 1 MiB).

The `:batch` forms carry many quotes or submits in one request (a router sends everything one event-loop
turn produced: one request where there were hundreds). Each item is served as if it came alone, concurrently,
and answered in order with its own outcome: `{"status": 200, "body": ...}` or `{"status": 503|504|400,
"error": reason, "kind": ...}` with the codes above. A batch's own status is 200 unless the batch itself is
unreadable (400) or names no venue (404).
Run: `python -m services.venue.server` (configuration: `VENUE_*`, tokens: `OEE_TOKENS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, cast

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from services.envvars import ConfigError
from services.metrics import metrics_route
from services.metrics import venue as venue_metrics

from . import wire
from .access import BodyTooLarge, VenueAccess
from .clock import SystemClock
from .config import VenueConfig, build_venues
from .interface import (
    SubmitConflict,
    SubmitExpired,
    SubmitOutcomeUnknown,
    SubmitReceipt,
    SwapStatus,
    Venue,
    VenueQuote,
    VenueRejected,
    VenueUnavailable,
)
from .market import MarketFeed, MarketSink, run_market
from .pool import SwapRefused
from .simulator import SimulatedVenue

log = logging.getLogger(__name__)
MAX_BATCH = 10_000  # ids in a status lookup, requests in a quote or submit batch
KEEP_ALIVE_S = 30  # above the client's idle timeout (15 s): the client always closes an idle connection first
FEED_BUFFER = 100_000  # settlements queued for one slow feed reader before its stream is cut
FEED_HEARTBEAT_S = 5.0  # an empty line on an idle feed, so both ends notice a dead connection


class UnknownVenue(LookupError):
    pass


class OpenFeeds:
    """The settlement feeds being served, so a server shutting down can end them: a feed never ends on its
    own, and uvicorn's graceful shutdown would otherwise wait its whole timeout for them on every stop."""

    def __init__(self) -> None:
        self._ends: set[Callable[[], None]] = set()

    def add(self, end: Callable[[], None]) -> Callable[[], None]:
        """Register `end` (ends one feed); returns the call that unregisters it."""
        self._ends.add(end)
        return lambda: self._ends.discard(end)

    def end_all(self) -> None:
        for end in list(self._ends):
            end()


class VenueServer(uvicorn.Server):
    """uvicorn's server, ending the settlement feeds as its shutdown starts (then readers reconnect to
    whichever venue serves next and reconcile, as after any cut)."""

    def __init__(self, config: uvicorn.Config, feeds: OpenFeeds) -> None:
        super().__init__(config)
        self._feeds = feeds

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._feeds.end_all()
        await super().shutdown(sockets)


# An error's HTTP status and `kind`, for a request alone and for a batch item alike.
# Subclasses before their bases: a batch item takes the first entry its error is an instance of.
ERRORS: dict[type[Exception], tuple[int, str]] = {
    SubmitExpired: (410, "expired"),
    SubmitConflict: (409, "conflict"),
    VenueUnavailable: (503, "unavailable"),
    SubmitOutcomeUnknown: (504, "outcome_unknown"),
    VenueRejected: (400, "rejected"),
    SwapRefused: (400, "rejected"),  # a pool's bound (decision 0030); the simulator names its venue first
    wire.BadRequest: (400, "rejected"),
    UnknownVenue: (404, "unknown_venue"),
    BodyTooLarge: (413, "too_large"),
}


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def create_app(
    venues: Mapping[str, Venue] | None = None,
    *,
    config: VenueConfig | None = None,
    tokens: Iterable[str] = ("SOL", "USDC", "ETH", "USDT"),
    secret: str | None = None,
    market: MarketSink | None = None,
    tick_s: float | None = None,
    market_window_s: float | None = None,
) -> Starlette:
    """An app serving `venues` (owned by the caller), or venues built from `config` at startup (owned).
    `secret` (default: the config's, none for caller-owned venues) is the bearer token every route but
    `/health` requires; empty: open. With a `market` sink, the simulated venues' pool states are published
    to it: their walk stepped every `tick_s`, coalesced per `market_window_s` (defaults: the config's)."""
    tick = tick_s if tick_s is not None else (config.tick_s if config is not None else 1.0)
    window = market_window_s if market_window_s is not None else (config.market_window_s if config else 0.1)
    if venues is None and config is None:
        config = VenueConfig.from_env()
    if secret is None:
        secret = config.secret if config is not None else ""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = venues is None
        if venues is not None:
            app.state.venues = dict(venues)
        else:
            assert config is not None  # set above when no venues are given
            app.state.venues = build_venues(config, tokens)
        if owned:
            _count_settlements(app.state.venues)
        sims = [v for v in app.state.venues.values() if isinstance(v, SimulatedVenue)]
        for venue in sims:
            venue.start()
            log.info("venue %s up (seed %s, %d swaps in ledger)", venue.name, venue.seed, len(venue.ledger))
        stop_market = None
        if market is not None and window > 0 and sims:
            await market.start()
            seed = sims[0].seed
            stop_market = await run_market(sims, MarketFeed(market, window, seed), SystemClock(), tick)
            log.info("market data: walk every %.3g s, published per %.3g s window", tick, window)
        try:
            yield
        finally:
            if stop_market is not None:
                await stop_market()
                await market.stop()  # type: ignore[union-attr]  # set with stop_market
            if owned:
                for venue in app.state.venues.values():
                    await venue.aclose()

    if venues is not None:
        _count_settlements(venues)  # now: the caller's venues outlive the app; nothing to undo

    feeds = OpenFeeds()
    routes = [
        Route("/health", health),
        Route("/venues/{name}/quote", quote, methods=["POST"]),
        Route("/venues/{name}/submit", submit, methods=["POST"]),
        Route("/venues/{name}/quote:batch", quote_batch, methods=["POST"]),
        Route("/venues/{name}/submit:batch", submit_batch, methods=["POST"]),
        Route("/venues/{name}/swaps:batch-status", batch_status, methods=["POST"]),
        Route("/venues/{name}/pools", list_pool, methods=["POST"]),
        Route("/venues/{name}/swaps/{client_order_id}", status),
        Route("/venues/{name}/settlements", settlements),
        Route("/venues/{name}/ledger", ledger),
        metrics_route(),  # GET /metrics (Prometheus)
    ]
    handlers: Mapping[Any, Any] = {cls: _error(code, kind) for cls, (code, kind) in ERRORS.items()}
    middleware = [Middleware(VenueAccess, secret=secret)]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers, middleware=middleware)
    app.state.feeds = feeds
    return app


def _count_settlements(venues: Mapping[str, Venue]) -> None:
    """Metrics: count every settlement by venue and state (subscribed once per venue, for its lifetime)."""
    for venue in venues.values():
        if isinstance(venue, SimulatedVenue):
            venue.on_settled(venue_metrics.settled)


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "venues": sorted(request.app.state.venues)})


async def quote(request: Request) -> Response:
    return JSONResponse(await _quote(_venue(request), await _body(request)))


async def submit(request: Request) -> Response:
    return JSONResponse(await _submit(_venue(request), await _body(request)))


async def quote_batch(request: Request) -> Response:
    venue, items = _venue(request), _requests(await _body(request))
    return JSONResponse({"results": await asyncio.gather(*(_item(_quote(venue, i)) for i in items))})


async def submit_batch(request: Request) -> Response:
    venue, items = _venue(request), _requests(await _body(request))
    return JSONResponse({"results": await asyncio.gather(*(_item(_submit(venue, i)) for i in items))})


async def _quote(venue: Venue, body: Any) -> VenueQuote:
    body = _object(body)
    with venue_metrics.counted(venue_metrics.QUOTES, venue.name):  # metrics: outcome per call
        return await venue.quote(
            wire.text(body, "base"), wire.text(body, "quote"), wire.side(body), wire.number(body, "amount_in")
        )


async def _submit(venue: Venue, body: Any) -> SubmitReceipt:
    body = _object(body)
    with venue_metrics.counted(venue_metrics.SUBMITS, venue.name):  # metrics: outcome per call
        return await venue.submit(
            wire.text(body, "client_order_id"),
            wire.text(body, "base"),
            wire.text(body, "quote"),
            wire.side(body),
            wire.number(body, "amount_in"),
            wire.number(body, "limit_price"),
            wire.optional_datetime(body, "valid_until"),
        )


async def _item(call: Awaitable[Any]) -> dict[str, Any]:
    """One batch item's outcome, with the status and error body it would have had as a request alone."""
    try:
        return {"status": 200, "body": await call}
    except tuple(ERRORS) as exc:
        code, kind = next(v for cls, v in ERRORS.items() if isinstance(exc, cls))
        return {"status": code, "error": _reason(exc), "kind": kind}


def _requests(body: dict[str, Any]) -> list[Any]:
    items = body.get("requests")
    if not isinstance(items, list) or not 0 < len(items) <= MAX_BATCH:
        raise wire.BadRequest(f"requests must be a list of 1 to {MAX_BATCH} request bodies")
    return items


async def list_pool(request: Request) -> Response:
    """An operator lists a new pool (a token launch, for snipers): 201 with the pool's first state."""
    venue, body = _venue(request), await _body(request)
    if not isinstance(venue, SimulatedVenue):
        raise UnknownVenue(f"{venue.name} cannot list pools")
    state = await venue.list_pool(
        wire.text(body, "base"),
        wire.text(body, "quote"),
        wire.number(body, "base_reserve"),
        wire.number(body, "quote_reserve"),
    )
    return JSONResponse(state, status_code=201)


async def status(request: Request) -> Response:
    return JSONResponse(await _venue(request).status(request.path_params["client_order_id"]))


async def batch_status(request: Request) -> Response:
    venue, body = _venue(request), await _body(request)
    ids = body.get("client_order_ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or len(ids) > MAX_BATCH:
        raise wire.BadRequest(f"client_order_ids must be a list of at most {MAX_BATCH} strings")
    return JSONResponse({"swaps": await venue.status_many(ids)})


async def settlements(request: Request) -> Response:
    venue = _venue(request)
    if not isinstance(venue, SimulatedVenue):
        raise UnknownVenue(f"{venue.name} has no settlement feed")
    queue: asyncio.Queue[SwapStatus | None] = asyncio.Queue(FEED_BUFFER)  # None: the server is stopping
    cut = False

    def push(status: SwapStatus) -> None:
        nonlocal cut
        try:
            queue.put_nowait(status)
        except asyncio.QueueFull:
            cut = True  # the reader fell behind: end its stream; it reconnects and reconciles

    def end() -> None:
        try:
            queue.put_nowait(None)
        except asyncio.QueueFull:
            pass  # a full queue is being read: the reader gets to the end of it and is cut there

    unsubscribe = venue.on_settled(push)
    forget = cast(OpenFeeds, request.app.state.feeds).add(end)

    async def lines() -> AsyncIterator[bytes]:
        try:
            while True:
                try:
                    first = await asyncio.wait_for(queue.get(), FEED_HEARTBEAT_S)
                except TimeoutError:
                    yield b"\n"
                    continue
                got = [first] + [queue.get_nowait() for _ in range(min(queue.qsize(), 1_000))]
                batch = [status for status in got if status is not None]
                if batch:
                    yield b"".join(orjson.dumps(s) + b"\n" for s in batch)
                if len(batch) < len(got):
                    return  # the server is stopping
                if cut and queue.empty():
                    log.warning(
                        "settlement feed of %s cut: its reader fell %d behind", venue.name, FEED_BUFFER
                    )
                    return
        finally:
            forget()
            unsubscribe()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


async def ledger(request: Request) -> Response:
    venue = _venue(request)
    if not isinstance(venue, SimulatedVenue):
        raise UnknownVenue(f"{venue.name} has no inspectable ledger")
    body: dict[str, Any] = {
        "size": len(venue.ledger),
        "pending": venue.pending_count,
        "max_entries_per_id": venue.ledger.max_entries(),
        "quotes_in_progress": venue.quotes_in_progress,
    }
    if request.query_params.get("detail") == "1":  # every swap: for drills and tests, not for hot paths
        body["swaps"] = {
            r.receipt.client_order_id: {
                "state": r.state,
                "tx_hash": r.receipt.tx_hash,
                "executed_price": r.executed_price,
                "executions": venue.ledger.settlements(r.receipt.client_order_id)
                if r.state == "confirmed"
                else 0,
                "settlements": venue.ledger.settlements(r.receipt.client_order_id),
            }
            for r in venue.ledger.records()
        }
    return JSONResponse(body)


def _venue(request: Request) -> Venue:
    name = request.path_params["name"]
    venue = request.app.state.venues.get(name)
    if venue is None:
        raise UnknownVenue(f"no venue named {name!r}")
    return venue  # type: ignore[no-any-return]


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise wire.BadRequest("body must be JSON") from None
    return _object(body)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise wire.BadRequest("body must be a JSON object")
    return body


def _reason(exc: Exception) -> str:
    return (
        exc.reason if isinstance(exc, VenueUnavailable | SubmitOutcomeUnknown | VenueRejected) else str(exc)
    )


def _error(code: int, kind: str) -> Any:
    async def handler(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": _reason(exc), "kind": kind}, status_code=code)

    return handler


def main() -> None:
    from services import logs
    from services.config import load

    settings = load()
    config = VenueConfig.from_env()
    config.check_exposure()
    logs.setup(settings.log_level, settings.log_format, "oee.venue")  # the services' one log format
    if not config.secret:
        log.warning(
            "VENUE_SECRET unset: the venue answers anyone who reaches %s:%d", config.host, config.port
        )
    from events.topics import Topics

    from .market import KafkaMarketSink

    # Bound before anything starts: an address this machine does not have is one clear line and uvicorn's
    # "could not start" code (3), not a lifespan that opened a broker connection and then had to drop it.
    try:
        sock = _listening(config.host, config.port)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        print(f"oee venue: cannot listen on {config.host}:{config.port}: {reason}", file=sys.stderr)
        raise SystemExit(3) from None
    sink = KafkaMarketSink(settings.bootstrap_servers, Topics.with_prefix(settings.topic_prefix).market_data)
    app = create_app(config=config, tokens=settings.tokens, market=sink)
    server = VenueServer(
        uvicorn.Config(
            app,
            log_config=None,  # uvicorn's loggers go through the root handler `logs.setup` installed
            log_level=settings.log_level.lower(),
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_S,
            timeout_graceful_shutdown=3,  # a request still running then is cut
        ),
        app.state.feeds,
    )
    server.run(sockets=[sock])


def _listening(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), as uvicorn would bind it (SO_REUSEADDR), not yet listening."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


if __name__ == "__main__":
    try:
        main()
    except ConfigError as exc:
        raise SystemExit(f"venue: {exc}") from None
