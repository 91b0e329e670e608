"""The Faust app every Faust worker of the engine runs (the router, the trigger engine): raw bytes in and out
(the contract decodes), no tables, no web server, topics never declared by Faust, and a short session so a
killed worker's partitions move to the others quickly."""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn

import faust

from services.config import Settings

__all__ = ["faust_app", "run_worker"]


def faust_app(settings: Settings, group_id: str, datadir: str, **more: Any) -> faust.App:
    """A Faust app in consumer group `group_id`; `more` adds or overrides `faust.App` settings."""
    return faust.App(
        group_id,
        **{
            "broker": f"kafka://{settings.bootstrap_servers}",
            "value_serializer": "raw",
            "key_serializer": "raw",
            "store": "memory://",
            "web_enabled": False,
            "topic_disable_leader": True,
            "topic_allow_declare": False,  # topics belong to the contract (`oee topics create`)
            "consumer_auto_offset_reset": "earliest",
            "datadir": datadir,
            "producer_acks": -1,
            "broker_commit_interval": 1.0,
            # A SIGKILLed worker's partitions move to the others once its session expires: keep that short.
            "broker_session_timeout": 10.0,
            "broker_heartbeat_interval": 1.0,
            "broker_rebalance_timeout": 30.0,
            **more,
        },
    )


class Worker(faust.Worker):
    """`faust.Worker` without mode's fixed pauses on the way out.

    mode's shutdown polls for up to 1 s for tasks that are still pending and then sleeps a 1 s "sentinel"
    before it closes the loop: 2 s added to every graceful stop (SIGTERM -> exit measured 2.2 s for the router
    and the trigger engine), paid by each supervised restart and each `oee down`. The engine's services stop
    their own tasks in the app's `on_before_shutdown` (after the consumer stopped), so by then only strays are
    left: they are cancelled and given up to a second to unwind, and the loop closes as soon as they have.
    """

    def _gather_all(self) -> None:
        pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.wait(pending, timeout=1.0))

    async def _sentinel_task(self) -> None:
        await asyncio.sleep(0)


def run_worker(app: faust.App, settings: Settings) -> NoReturn:
    """Run `app` in the foreground until SIGTERM/SIGINT (Faust's worker: signals, start, graceful stop)."""
    worker = Worker(app, loglevel=settings.log_level.lower(), quiet=True, override_logging=False)
    worker.spinner = None  # its cursor escapes end up in log files
    worker.execute_from_commandline()
