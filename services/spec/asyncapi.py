"""The AsyncAPI 3.0 document: the WebSocket frames and the Kafka topics, generated from the event classes.

- Topics: every topic of `events.topics` (names with the deployment's prefix, partitions and configs from
  `topic_specs`); the log's messages are the event classes (`EVENT_TYPES`) with their `type` and
  `schema_version` headers and the order id as key; dead letters carry the `dlq.*` headers.
- WebSockets: `/ws/orders/{orderId}` sends one frame per event type (`services.spec.frames`, generated from
  the same registry); `/ws` adds the control frames and receives the client's messages.

Payload schemas are msgspec's (JSON Schema) in `components.schemas`. Pure: `document()` builds a dict;
`oee schemas` writes it to `docs/asyncapi.json`, the API serves it at `/asyncapi.json`.
"""

from __future__ import annotations

import inspect
from typing import Any

import msgspec

from events.codec import HEADER_SCHEMA_VERSION, HEADER_TYPE, encode
from events.examples import example_events
from events.topics import (
    DLQ_ERROR,
    DLQ_REPLAY_OF,
    DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_TOPIC,
    Topics,
    topic_specs,
)
from events.types import EVENT_TYPES, SCHEMA_VERSION, STATUS
from services.spec import frames

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING = "0.5.0"
WS_BINDING = "0.1.0"

_REF = "#/components/schemas/{name}"
_UUID = {"type": "string", "format": "uuid", "description": "the order id (lower-case UUID)"}


def _schema_ref(t: type) -> dict[str, str]:
    return {"$ref": _REF.format(name=t.__name__)}


def _doc(t: type) -> str:
    return inspect.getdoc(t) or ""


def document(
    *,
    version: str,
    prefix: str = "",
    partitions: int = 12,
    api: str = "localhost:3000",
    kafka: str = "localhost:9092",
) -> dict[str, Any]:
    """The AsyncAPI document of a deployment whose topics have `prefix` and `partitions` partitions."""
    from services.router.flow import Tracked

    topics = Topics.with_prefix(prefix)
    specs = {s.name: s for s in topic_specs(topics, partitions)}
    types: list[type] = [
        *EVENT_TYPES.values(),
        *frames.EVENT_FRAMES.values(),
        *frames.CONTROL_FRAMES,
        *frames.CLIENT_MESSAGES,
        Tracked,
    ]
    _, schemas = msgspec.json.schema_components(types, ref_template=_REF)
    examples = example_events()

    def event_message(name: str) -> dict[str, Any]:
        cls = EVENT_TYPES[name]
        return {
            "name": name,
            "title": f"{name} (schema_version {SCHEMA_VERSION[name]}) → {STATUS.get(name, 'status unchanged')}",
            "summary": _doc(cls).splitlines()[0],
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "required": [HEADER_TYPE, HEADER_SCHEMA_VERSION],
                "properties": {
                    HEADER_TYPE: {"type": "string", "const": name, "description": "skip without decoding"},
                    HEADER_SCHEMA_VERSION: {"type": "string", "description": "the value's schema_version"},
                },
            },
            "payload": _schema_ref(cls),
            "bindings": {"kafka": {"key": _UUID, "bindingVersion": KAFKA_BINDING}},
            "examples": [{"name": "example", "payload": msgspec.json.decode(encode(examples[name]))}],
        }

    def frame_message(name: str) -> dict[str, Any]:
        return {
            "name": f"{name}Frame",
            "title": f"{STATUS.get(name, 'status unchanged')} frame ({name})",
            "summary": f"the frame of an {name} event: the seed's orderId, status, data, ts plus seq",
            "contentType": "application/json",
            "payload": _schema_ref(frames.EVENT_FRAMES[name]),
        }

    def plain_message(t: type, summary: str) -> dict[str, Any]:
        return {
            "name": t.__name__,
            "summary": summary,
            "contentType": "application/json",
            "payload": _schema_ref(t),
        }

    event_frames = {f"{n}Frame": frame_message(n) for n in EVENT_TYPES}
    controls = {
        t.__name__: plain_message(t, f"`{t.__name__.lower()}` control frame") for t in frames.CONTROL_FRAMES
    }
    client = {
        t.__name__: plain_message(t, f"`{t.__name__.lower()}` message from the client")
        for t in frames.CLIENT_MESSAGES
    }
    log_messages = {n: event_message(n) for n in EVENT_TYPES}
    dead_letter = {
        "name": "DeadLetter",
        "summary": "a record a consumer could not decode or apply, copied verbatim (key, value, headers)",
        "contentType": "application/octet-stream",
        "headers": {
            "type": "object",
            "required": [DLQ_SOURCE_TOPIC, DLQ_SOURCE_PARTITION, DLQ_SOURCE_OFFSET, DLQ_ERROR],
            "properties": {
                DLQ_SOURCE_TOPIC: {"type": "string", "description": "the topic it was read from"},
                DLQ_SOURCE_PARTITION: {"type": "string", "description": "its partition (decimal)"},
                DLQ_SOURCE_OFFSET: {"type": "string", "description": "its offset (decimal)"},
                DLQ_ERROR: {"type": "string", "description": "why it was set aside (at most 4 KiB)"},
                DLQ_REPLAY_OF: {
                    "type": "string",
                    "description": "present on a replayed copy that failed again",
                },
            },
        },
        "payload": {"description": "the original value, whatever it was"},
    }
    state_message = {
        "name": "RouterState",
        "summary": "the router's memory of one order (compacted, key = order id); key ~intake-position holds "
        "the partition's intake position {next_offset}",
        "contentType": "application/json",
        "payload": {"oneOf": [_schema_ref(Tracked), {"type": "object", "required": ["next_offset"],
                    "properties": {"next_offset": {"type": "integer", "minimum": 0}}}]},
        "bindings": {"kafka": {"key": {"type": "string"}, "bindingVersion": KAFKA_BINDING}},
    }  # fmt: skip

    def topic(name: str, messages: dict[str, Any], description: str) -> dict[str, Any]:
        spec = specs[name]
        config: dict[str, Any] = {}
        for key, value in spec.config.items():
            config[key] = (
                value.split(",")
                if key == "cleanup.policy"
                else (int(value) if value.lstrip("-").isdigit() else value)
            )
        kafka: dict[str, Any] = {"topic": name, "partitions": spec.partitions}
        if (
            spec.replication_factor is not None
        ):  # None: as the cluster allows, min(3, brokers) (decision 0011)
            kafka["replicas"] = spec.replication_factor
        kafka |= {"topicConfiguration": config, "bindingVersion": KAFKA_BINDING}
        return {
            "address": name,
            "description": description,
            "servers": [{"$ref": "#/servers/kafka"}],
            "messages": messages,
            "bindings": {"kafka": kafka},
        }

    requested = {"OrderRequested": log_messages["OrderRequested"]}
    channels: dict[str, Any] = {
        "orderStream": {
            "address": "/ws/orders/{orderId}",
            "title": "one order's frames",
            "description": "History first, then live, in seq order with no gap and no duplicate; closed 1000 after "
            "the terminal event (`keepOpen=1`: stays open). Close codes: docs/gateway.md.",
            "servers": [{"$ref": "#/servers/api"}],
            "parameters": {"orderId": {"description": "the order id (a UUID)"}},
            "messages": dict(event_frames),
            "bindings": {
                "ws": {
                    "query": {
                        "type": "object",
                        "properties": {
                            "fromSeq": {
                                "type": "integer",
                                "minimum": 0,
                                "description": "the last seq you have",
                            },
                            "keepOpen": {
                                "type": "string",
                                "description": "1: stay open after the terminal event",
                            },
                        },
                    },
                    "bindingVersion": WS_BINDING,
                }
            },
        },
        "multiplexed": {
            "address": "/ws",
            "title": "many orders on one connection",
            "servers": [{"$ref": "#/servers/api"}],
            "messages": {**event_frames, **controls, **client},
        },
        "requests": topic(topics.requests, requested, "the intake: one OrderRequested per accepted order"),
        "events": topic(
            topics.events, log_messages, "the order event log, the source of truth (kept forever)"
        ),
        "deadLetters": topic(topics.dead_letters, {"DeadLetter": dead_letter}, "records set aside, with why"),
        "routerState": topic(
            topics.router_state, {"RouterState": state_message}, "the router's memory (internal)"
        ),
    }

    def refs(channel: str, names: list[str]) -> list[dict[str, str]]:
        return [{"$ref": f"#/channels/{channel}/messages/{n}"} for n in names]

    frame_names = list(event_frames)
    operations = {
        "sendOrderFrames": {
            "action": "send",
            "channel": {"$ref": "#/channels/orderStream"},
            "summary": "the API sends an order's frames",
            "messages": refs("orderStream", frame_names),
        },
        "sendMultiplexedFrames": {
            "action": "send",
            "channel": {"$ref": "#/channels/multiplexed"},
            "summary": "the API sends the subscribed orders' frames and control frames",
            "messages": refs("multiplexed", frame_names + list(controls)),
        },
        "receiveClientMessages": {
            "action": "receive",
            "channel": {"$ref": "#/channels/multiplexed"},
            "summary": "the API receives subscribe, unsubscribe and ping",
            "messages": refs("multiplexed", list(client)),
        },
        "appendRequest": {
            "action": "send",
            "channel": {"$ref": "#/channels/requests"},
            "summary": "the ingress appends each accepted order (acks=all, idempotent)",
            "messages": refs("requests", ["OrderRequested"]),
        },
        "consumeRequests": {
            "action": "receive",
            "channel": {"$ref": "#/channels/requests"},
            "summary": "the router consumes the intake",
            "messages": refs("requests", ["OrderRequested"]),
        },
        "appendEvents": {
            "action": "send",
            "channel": {"$ref": "#/channels/events"},
            "summary": "the router appends every lifecycle event, in transactions",
            "messages": refs("events", list(log_messages)),
        },
        "consumeEvents": {
            "action": "receive",
            "channel": {"$ref": "#/channels/events"},
            "summary": "the projector and the gateway read the log (read_committed)",
            "messages": refs("events", list(log_messages)),
        },
        "setAside": {
            "action": "send",
            "channel": {"$ref": "#/channels/deadLetters"},
            "summary": "the router sets aside intake records it cannot decode",
            "messages": refs("deadLetters", ["DeadLetter"]),
        },
        "rememberOrders": {
            "action": "send",
            "channel": {"$ref": "#/channels/routerState"},
            "summary": "the router writes each order's state with its events",
            "messages": refs("routerState", ["RouterState"]),
        },
    }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "oee: order frames and topics",
            "version": version,
            "description": "The WebSocket frames of the order execution engine's API and the Kafka topics "
            "between its services, generated from the event classes (docs/events.md, docs/gateway.md).",
        },
        "defaultContentType": "application/json",
        "servers": {
            "api": {
                "host": "{api}",
                "protocol": "ws",
                "description": "the API process (`oee api`): WebSockets beside the HTTP API",
                "variables": {"api": {"default": api, "description": "the API's host:port"}},
                "security": [{"$ref": "#/components/securitySchemes/apiKey"}],
            },
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "the broker (any Kafka-protocol broker; Redpanda under compose)",
                "variables": {"bootstrap": {"default": kafka, "description": "KAFKA_BOOTSTRAP_SERVERS"}},
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer <key>`, or a browser's subprotocols `oee.v1`, "
                    "`bearer.<key>` (AUTH=keys)",
                }
            },
        },
    }
