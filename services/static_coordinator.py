"""What aiokafka 0.14's group coordinator lacks as a static member (KIP-345), added to it (decision 0029).

1. **Leaving on a graceful stop.** aiokafka (like the Java consumer before KIP-1092) sends no LeaveGroup for a
   member with a `group.instance.id`, so a static member that stops leaves its partitions idle until its
   session ends. Here, when the consumer closes (`AIOKafkaConsumer.stop()`, which Faust's consumer thread
   calls too), a static member sends LeaveGroup v3, `members: [{member_id, group_instance_id}]`, which removes
   it at once. It names its own member id: if another process has taken the instance id meanwhile, the broker
   answers FENCED_INSTANCE_ID for it and removes nobody (an empty member id would remove the other process).
   Only on close: a member that missed its poll interval keeps the library's behaviour.
2. **Being fenced on the next heartbeat.** aiokafka heartbeats with v0/v1, which carry no instance id: a member
   whose id another process took gets UNKNOWN_MEMBER_ID, rejoins with the id and takes it back, and the two
   take it from each other on every heartbeat (fencing error 82 shows only when a join happens to cross a
   rebalance). Heartbeat v3 carries the instance id, and the broker answers the replaced member
   FENCED_INSTANCE_ID on its next heartbeat: deterministic. The error then reaches the consumer's user
   (`getmany` raises it; `services.static_membership.is_fenced` recognises it), and every callback given to
   `on_fenced` runs (the router, whose Faust fetcher never raises it, stops through one).

`install()` patches the coordinator class once per process; it changes nothing for dynamic members.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeAlias

from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.group import HeartbeatRequest
from aiokafka.protocol.types import Array, Int16, Int32, Schema, String

from services.static_membership import FencedInstanceIdError

__all__ = ["FencedCallback", "install", "on_fenced"]

log = logging.getLogger("oee.static")

FencedCallback: TypeAlias = Callable[[str, str], object]
"""Called with (group id, instance id) in the consumer's own thread and loop when the broker fences it."""

_fenced_callbacks: list[FencedCallback] = []
_installed = False


class LeaveGroupResponse_v3(Response):
    API_KEY = 13
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        (
            "members",
            Array(
                ("member_id", String("utf-8")), ("group_instance_id", String("utf-8")), ("error_code", Int16)
            ),
        ),
    )


class LeaveGroupRequest_v3(RequestStruct):
    API_KEY = 13
    API_VERSION = 3
    RESPONSE_TYPE = LeaveGroupResponse_v3
    SCHEMA = Schema(
        ("group", String("utf-8")),
        ("members", Array(("member_id", String("utf-8")), ("group_instance_id", String("utf-8")))),
    )


class LeaveGroupAsStatic(Request[LeaveGroupRequest_v3]):
    """LeaveGroup v3 (Kafka 2.4+, KIP-345) for one static member, by its member id and its instance id."""

    API_KEY = 13

    def __init__(self, group: str, member_id: str, instance_id: str) -> None:
        self._group = group
        self._member = (member_id, instance_id)

    def build(self, request_struct_class: type[LeaveGroupRequest_v3]) -> LeaveGroupRequest_v3:
        return request_struct_class(self._group, [self._member])


class HeartbeatResponse_v3(Response):
    API_KEY = 12
    API_VERSION = 3
    SCHEMA = Schema(("throttle_time_ms", Int32), ("error_code", Int16))


class HeartbeatRequest_v3(RequestStruct):
    API_KEY = 12
    API_VERSION = 3
    RESPONSE_TYPE = HeartbeatResponse_v3
    SCHEMA = Schema(
        ("group", String("utf-8")),
        ("generation_id", Int32),
        ("member_id", String("utf-8")),
        ("group_instance_id", String("utf-8")),
    )


class HeartbeatAsStatic(Request[HeartbeatRequest_v3]):
    """Heartbeat v3 (Kafka 2.3+): with the instance id, so a replaced member is told FENCED_INSTANCE_ID."""

    API_KEY = 12

    def __init__(self, group: str, generation_id: int, member_id: str, instance_id: str) -> None:
        self._fields = (group, generation_id, member_id, instance_id)

    def build(self, request_struct_class: type[HeartbeatRequest_v3]) -> HeartbeatRequest_v3:
        return request_struct_class(*self._fields)


def on_fenced(callback: FencedCallback) -> None:
    """Run `callback(group, instance)` whenever the broker answers a static member of this process with
    FENCED_INSTANCE_ID. It runs in the consumer's loop (Faust's consumer thread for the router): hand over
    with `loop.call_soon_threadsafe`."""
    _fenced_callbacks.append(callback)


def leave_outcome(response: Any) -> KafkaError | None:
    """The error of a LeaveGroup v3 response for our one member, or None if it left."""
    error = for_code(response.error_code)
    if error.errno == 0:
        for _member, _instance, code in response.members:
            error = for_code(code)
            if error.errno != 0:
                break
    return None if error.errno == 0 else error()


async def _leave_as_static(coordinator: Any) -> None:
    group, member, instance = coordinator.group_id, coordinator.member_id, coordinator._group_instance_id
    request = LeaveGroupAsStatic(group, member, instance)
    # A stop must not hang on a broker that is gone: past the session the broker drops the member anyway.
    timeout_s = coordinator._session_timeout_ms / 1000
    try:
        response = await asyncio.wait_for(_original_send_req(coordinator, request), timeout_s)
    except (KafkaError, NotImplementedError, TimeoutError) as exc:
        log.warning(
            "could not leave group %s as %r (%r): its partitions move when its session ends",
            group,
            instance,
            exc,
        )
        return
    error = leave_outcome(response)
    if error is None:
        log.info("left group %s as static member %r: its partitions move now", group, instance)
    else:
        log.warning(
            "leaving group %s as %r: %r (its partitions move when its session ends)", group, instance, error
        )


async def _maybe_leave_group(self: Any) -> None:
    # `_closing` is done only inside `close()`: the consumer is stopping (its heartbeat and coordination
    # tasks have already ended, its client is still open).
    static = self._group_instance_id is not None
    if static and self._closing.done() and self.generation > 0 and not getattr(self, "_oee_fenced", False):
        await _leave_as_static(self)
    await _original_maybe_leave_group(self)  # a static member: only resets the generation


async def _send_req(self: Any, request: Any) -> Any:
    instance = self._group_instance_id
    if instance is not None and type(request) is HeartbeatRequest:
        request = HeartbeatAsStatic(request._group, request._generation_id, request._member_id, instance)
    response = await _original_send_req(self, request)
    if instance is not None and getattr(response, "error_code", None) == FencedInstanceIdError.errno:
        _fenced(self, instance)
    return response


def _fenced(coordinator: Any, instance: str) -> None:
    if getattr(coordinator, "_oee_fenced", False):
        return
    coordinator._oee_fenced = True  # it no longer owns the id: never leave with it
    for callback in list(_fenced_callbacks):
        try:
            callback(coordinator.group_id, instance)
        except Exception:
            log.exception("a fencing callback failed")


_original_send_req = GroupCoordinator._send_req
_original_maybe_leave_group = GroupCoordinator._maybe_leave_group


def install() -> None:
    """Patch aiokafka's group coordinator (once per process): static members leave on close and heartbeat
    with their instance id. Dynamic members are unaffected."""
    global _installed
    if _installed:
        return
    GroupCoordinator._send_req = _send_req
    GroupCoordinator._maybe_leave_group = _maybe_leave_group
    _installed = True
