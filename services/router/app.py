"""`oee router`: the Faust worker that routes orders.

Faust owns what it is good at: the consumer group over the intake topic, partition assignment and the
agent loop. The agent runs with `concurrency=1`, so one partition's records are handled in order, and
parallelism comes from partitions and from orders waiting on venues concurrently (Faust's `concurrency > 1`
may process a partition "in no particular order" and commit past an event still in flight: faust-streaming
issue 606). The agent hands records to a `Batcher`, which gives the core everything that arrived while it
was busy (see `services.router.batching`). Faust's own exactly-once mode is not used (open duplicate bugs
517, 323, 177): each batch is committed by `RouterCore` in Kafka transactions, with the intake position in the
router's state topic and, about once a second, the consumed offsets sent to the same consumer group inside
them (docs/decisions/0006); Faust's own offset commits are turned off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import faust
from faust.types import TP

from events.topics import Topics
from services import static_coordinator
from services.config import Settings
from services.faustapp import faust_app, run_worker
from services.router.admission import Admissions, PgAdmissions
from services.router.batching import Batcher
from services.router.core import RouterCore
from services.router.options import RouterOptions
from services.router.supervision import EX_SOFTWARE
from services.router.worker import Record
from services.static_membership import InstanceFenced
from services.venue.interface import Venue

log = logging.getLogger("oee.router")


def group_id(settings: Settings) -> str:
    return f"{settings.topic_prefix}oee-router"


def build_app(
    settings: Settings, core: RouterCore, datadir: str, batch_max: int = 500, instance_id: str | None = None
) -> faust.App:
    """`instance_id`: static membership in the router's group (`ROUTER_INSTANCE_ID`, decision 0029); None:
    dynamic."""
    topics = Topics.with_prefix(settings.topic_prefix)
    app = faust_app(
        settings,
        group_id(settings),
        datadir,
        stream_buffer_maxsize=max(4 * batch_max, 4096),
        consumer_group_instance_id=instance_id,
    )
    if instance_id is not None:
        static_coordinator.install()  # leave the group on stop, be fenced on a heartbeat (decision 0029)
    intake = app.topic(topics.requests, value_type=bytes, key_type=bytes, allow_empty=True)
    _leave_offsets_to_transactions(app)
    core.rewind = _rewinder(app, topics.requests)

    batcher = Batcher(core.handle, batch_max, pending_max=4 * batch_max)

    @app.agent(intake, concurrency=1)
    async def route(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            m = event.message
            await batcher.put(Record(m.partition, m.offset, m.value, m.key, list(m.headers or ())))

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # faust types the receiver too narrowly
    async def on_assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        await core.assign({tp.partition for tp in assigned if tp.topic == topics.requests})

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        mine = {tp.partition for tp in revoked if tp.topic == topics.requests}
        batcher.drop_partitions(mine)
        await core.assign(set(core.workers) - mine)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # sent once the consumer has stopped
    async def stop_core(sender: Any, **kwargs: Any) -> None:
        await core.stop()

    @app.task
    async def start_core() -> None:
        await core.start()
        core.spawn(batcher.run(), "router-batches")
        fenced = _when_fenced(instance_id)
        done, _ = await asyncio.wait({core.crashed, fenced}, return_when=asyncio.FIRST_COMPLETED)
        exc = done.pop().result()
        if isinstance(exc, InstanceFenced):
            log.critical("%s", exc)  # one line; its own words say what to do
            core.supervisor.cause = exc  # what stopped it: the process exits non-zero (below)
        else:  # logged with its traceback where it happened (`Supervisor.crash`)
            log.critical("router exiting with status %d after a graceful stop", EX_SOFTWARE)
        os.kill(os.getpid(), signal.SIGTERM)
        # If a graceful stop hangs on the failed producer, leave anyway: nothing uncommitted matters.
        asyncio.get_running_loop().call_later(15.0, os._exit, EX_SOFTWARE)

    return app


def _when_fenced(instance_id: str | None) -> asyncio.Future[BaseException]:
    """Resolves with `InstanceFenced` when another process takes this router's instance id. Faust's fetcher
    never raises the consumer's errors, so without this a fenced router would sit idle, neither routing nor
    stopping. The callback runs in Faust's consumer thread, hence the thread-safe hand-over."""
    loop = asyncio.get_running_loop()
    fenced: asyncio.Future[BaseException] = loop.create_future()

    def settle(exc: BaseException) -> None:
        if not fenced.done():
            fenced.set_result(exc)

    if instance_id is not None:
        static_coordinator.on_fenced(
            lambda group, instance: loop.call_soon_threadsafe(
                settle, InstanceFenced("router", group, instance, "ROUTER_INSTANCE_ID")
            )
        )
    return fenced


def _leave_offsets_to_transactions(app: faust.App) -> None:
    """Faust acks a `take()` batch even when its body raised, and would then commit those offsets on its
    timer or at shutdown, skipping orders whose transaction never committed. The intake offsets are
    committed only inside the router's transactions, so Faust's own offset commits are turned off."""

    async def commit_nothing(offsets: Mapping[Any, int]) -> bool:
        return True

    app.consumer._commit = commit_nothing  # type: ignore[attr-defined]


def _rewinder(app: faust.App, topic: str) -> Callable[[int, int], Awaitable[bool]]:
    """How the core makes Faust's consumer read intake partition p again from an offset (`seek_wait`, which
    seeks in the consumer's own thread and moves Faust's read offset with it). A partition revoked meanwhile
    refuses the seek: its next owner starts from its own restored position."""

    async def rewind(partition: int, offset: int) -> bool:
        try:
            await asyncio.wait_for(app.consumer.seek_wait({TP(topic, partition): offset}), 30)
        except Exception as exc:
            log.warning("intake partition %d: could not rewind to %d: %r", partition, offset, exc)
            return False
        return True

    return rewind


def make_core(
    settings: Settings,
    venues: Mapping[str, Venue],
    options: RouterOptions | None = None,
    admissions: Admissions | None = None,
) -> RouterCore:
    """The router as `oee router` runs it: admitted order ids recorded in PostgreSQL (`oee_state`, whose
    migrations it applies before the first admission)."""
    topics = Topics.with_prefix(settings.topic_prefix)
    return RouterCore(
        settings.bootstrap_servers,
        topics,
        topics.router_state,
        group_id(settings),
        venues,
        options,
        admissions=admissions if admissions is not None else PgAdmissions(settings.database_url),
    )


def run(settings: Settings) -> None:
    """Run the router worker in the foreground until SIGTERM/SIGINT."""
    import uvloop

    from services.venue.client import connect_venues
    from services.venue.config import VenueConfig, build_venues

    # Before anything creates a loop-bound object: Faust and the venue clients then all run on uvloop.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.set_event_loop(asyncio.new_event_loop())

    vcfg = VenueConfig.from_env()
    if vcfg.url:
        venues: Mapping[str, Venue] = connect_venues(vcfg.url, timeout_s=vcfg.timeout_s, secret=vcfg.secret)
        log.info("routing to the venue server at %s", vcfg.url)
    else:
        venues = build_venues(vcfg, settings.tokens)
        log.info("venues run inside the router (seed %s); set VENUE_URL to use a venue server", vcfg.seed)
    options = RouterOptions.from_env(os.environ)
    core = make_core(settings, venues, options)
    attach_settlements(core, venues)
    _serve_metrics(settings, core)
    datadir = settings.stack.state_dir / "faust"
    datadir.mkdir(parents=True, exist_ok=True)
    app = build_app(settings, core, str(datadir), options.batch_max, options.instance_id)
    try:
        run_worker(app, settings)
    except SystemExit:
        # The crash stopped the worker through SIGTERM, which Faust's worker ends with status 0.
        if core.supervisor.cause is not None:
            raise SystemExit(EX_SOFTWARE) from None
        raise


def _serve_metrics(settings: Settings, core: RouterCore) -> None:
    """/metrics on ROUTER_METRICS_PORT (the router has no HTTP server of its own); 0 turns it off."""
    from services import metrics
    from services.metrics import router as router_metrics

    router_metrics.track_in_flight(lambda: sum(len(w.active) for w in list(core.workers.values())))
    metrics.serve(metrics.port_from_env(None, "ROUTER_METRICS_PORT"), settings.host, "router metrics")


def attach_settlements(core: RouterCore, venues: Mapping[str, Venue]) -> None:
    """Deliver every venue's settlements to the core as they happen (in-process callback or HTTP feed)."""
    for venue in venues.values():
        on_settled = getattr(venue, "on_settled", None)
        if callable(on_settled):
            on_settled(core.on_settlement)
        else:
            feed = getattr(venue, "follow_settlements", None)
            if feed is None:
                log.warning("venue %s has no settlement feed; relying on reconciliation", venue.name)
                continue

            async def pump(feed: Any = feed) -> None:
                async for status in feed():
                    core.on_settlement(status)

            core.extra_loops.append(pump)
