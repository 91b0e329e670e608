"""The Faust app every Faust worker of the engine runs (the router, the trigger engine): raw bytes in and out
(the contract decodes), no tables, no web server, topics never declared by Faust, and a short session so a
killed worker's partitions move to the others quickly."""

from __future__ import annotations

from typing import Any

import faust

from services.config import Settings

__all__ = ["faust_app"]


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
