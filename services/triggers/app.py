"""`oee triggers`: the trigger engine as a Faust worker, an agent over the market-data topic.

Faust owns the consumer group over the market data (key = pair, so a pair's events of both venues come in
order to one engine), with static membership (`TRIGGERS_INSTANCE_ID`): a restarted engine takes its
partitions back at once instead of waiting out the dead member's session. The agent runs with
`concurrency=1` and waits for the engine's book to be restored before it evaluates anything; each market
event is handled (its trigger requests acknowledged) before the next, and the group's committed offsets
never pass an event not handled (`services.triggers.offsets`). The engine itself is
`services.triggers.engine`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

import faust

from events.topics import Topics
from services import static_coordinator
from services.config import Settings
from services.faustapp import faust_app, run_worker
from services.static_membership import InstanceFenced
from services.triggers.engine import TriggerEngine
from services.triggers.offsets import gate_commits, start_at_recent_market
from services.triggers.options import TriggerOptions

log = logging.getLogger("oee.triggers")


def group_id(settings: Settings) -> str:
    return f"{settings.topic_prefix}oee-triggers"


def build_app(settings: Settings, engine: TriggerEngine, datadir: str, instance_id: str) -> faust.App:
    topics = Topics.with_prefix(settings.topic_prefix)
    app = faust_app(settings, group_id(settings), datadir, consumer_group_instance_id=instance_id)
    static_coordinator.install()  # leave the group on stop, be fenced on a heartbeat (decision 0029)
    market = app.topic(topics.market_data, value_type=bytes, key_type=bytes, allow_empty=True)
    gate_commits(app, lambda: engine.processed)
    crashed: asyncio.Future[BaseException] = asyncio.get_event_loop().create_future()

    def crash(exc: BaseException) -> None:
        if not crashed.done():
            crashed.set_result(exc)

    # Another live engine took this one's instance id: stop with one line (Faust's fetcher never raises it).
    # The callback runs in Faust's consumer thread.
    loop = asyncio.get_event_loop()
    static_coordinator.on_fenced(
        lambda group, instance: loop.call_soon_threadsafe(
            crash, InstanceFenced("trigger engine", group, instance, "TRIGGERS_INSTANCE_ID")
        )
    )

    @app.agent(market, concurrency=1)
    async def watch(stream: faust.StreamT[Any]) -> None:
        await engine.ready.wait()
        async for event in stream.events():
            m = event.message
            try:
                await engine.on_market(m.value, m.partition, m.offset)
            except Exception as exc:  # a bug: stop without counting the event handled
                crash(exc)
                await asyncio.get_running_loop().create_future()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # faust types the receiver too narrowly
    async def on_assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        mine = sorted(tp.partition for tp in assigned if tp.topic == topics.market_data)
        log.info("market partitions assigned: %d (%s)", len(mine), ",".join(map(str, mine)))

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # sent once the consumer has stopped
    async def stop_engine(sender: Any, **kwargs: Any) -> None:
        await engine.stop()

    @app.task
    async def start_engine() -> None:
        try:
            await engine.start()
            tail = engine.tail
            assert tail is not None
            tail.add_done_callback(lambda t: crash(t.exception() or RuntimeError("resting tail ended")))
        except Exception as failure:
            crash(failure)
        reason = await crashed
        engine.failure = reason  # the process exits non-zero after its graceful stop (`run`)
        if isinstance(reason, InstanceFenced):
            log.critical("%s", reason)  # one line; its own words say what to do
        else:
            log.critical("trigger engine exiting: %r", reason)
        os.kill(os.getpid(), signal.SIGTERM)
        asyncio.get_running_loop().call_later(15.0, os._exit, 70)

    return app


def run(settings: Settings) -> None:
    """Run the trigger engine in the foreground until SIGTERM/SIGINT."""
    import uvloop

    from services import metrics

    log.info("trigger engine starting")
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    options = TriggerOptions.from_env()
    topics = Topics.with_prefix(settings.topic_prefix)
    group = group_id(settings)
    seeded = loop.run_until_complete(
        start_at_recent_market(settings.bootstrap_servers, group, topics.market_data, options.history_s)
    )
    if seeded:
        log.info(
            "first start: market data read from %.0f s ago on %d partitions", options.history_s, len(seeded)
        )
    engine = TriggerEngine(settings.bootstrap_servers, topics, group, options)
    metrics.serve(
        metrics.port_from_env(None, "TRIGGERS_METRICS_PORT"), settings.host, "trigger engine metrics"
    )
    datadir = settings.stack.state_dir / "faust-triggers"
    datadir.mkdir(parents=True, exist_ok=True)
    app = build_app(settings, engine, str(datadir), f"{group}-{options.instance_id}")
    try:
        run_worker(app, settings)
    except SystemExit:
        # A failure stopped the worker through SIGTERM, which Faust's worker ends with status 0.
        if engine.failure is not None:
            raise SystemExit(70) from None  # EX_SOFTWARE, as the router
        raise
