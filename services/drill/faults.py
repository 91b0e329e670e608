"""Injecting one fault into the drill's stack, and telling when the stack is whole again.

Kills go to one running instance of the kind (picked at random), by the pid the supervisor reports, and the
supervisor brings it back; a broker's kill or pause goes through `kafka.signal_node`; PostgreSQL is marked
stopped on purpose (so the supervisor leaves it down for the outage), killed with SIGQUIT (PostgreSQL's
immediate shutdown: no checkpoint, crash recovery at the next start) and started again after the outage;
lost venue replies are the proxy's. A fault that lasts (a pause, an outage, lost replies) is undone here
before `inject` returns, also when the drill is interrupted meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from services.drill import plan as kinds
from services.drill.plan import Durations
from services.drill.proxy import ReplyDropper
from services.drill.stack import DrillStack
from services.drill.verdict import FaultRecord
from services.stack import kafka, postgres
from services.stack.procs import pid_alive

_KILLS = {
    kinds.KILL_ROUTER: "router",
    kinds.KILL_PROJECTOR: "projector",
    kinds.KILL_API: "api",
    kinds.KILL_GATEWAY: "gateway",
    kinds.KILL_VENUE: "venue",
}


def _kind(name: str) -> str:
    return name.split("-", 1)[0]


def _node_id(name: str) -> int:
    return 1 if name == "kafka" else int(name.split("-", 1)[1])


class Injector:
    def __init__(
        self, stack: DrillStack, proxy: ReplyDropper, durations: Durations, rng: random.Random
    ) -> None:
        self.stack = stack
        self.proxy = proxy
        self.durations = durations
        self.rng = rng

    async def inject(self, kind: str) -> FaultRecord:
        components = await asyncio.to_thread(self.stack.components)
        try:
            if kind in _KILLS:
                return self._kill(kind, _KILLS[kind], components)
            if kind == kinds.KILL_BROKER:
                return self._broker(kind, components, signal.SIGKILL)
            if kind == kinds.PAUSE_BROKER:
                return await self._pause(components)
            if kind == kinds.STOP_POSTGRES:
                return await self._postgres(components)
            if kind == kinds.DROP_REPLIES:
                return await self._drop()
        except (OSError, RuntimeError, ValueError) as exc:
            return FaultRecord(kind, "?", time.time(), time.time(), error=repr(exc))
        return FaultRecord(kind, "?", time.time(), time.time(), error="unknown fault kind")

    def _running(self, components: dict[str, dict[str, Any]], kind: str) -> list[tuple[str, int]]:
        return [
            (name, int(c["pid"]))
            for name, c in components.items()
            if _kind(name) == kind and c["state"] == "running" and c["pid"]
        ]

    def _kill(self, fault: str, service: str, components: dict[str, dict[str, Any]]) -> FaultRecord:
        candidates = self._running(components, service)
        if not candidates:
            return FaultRecord(fault, service, time.time(), time.time(), error=f"no {service} running")
        name, pid = self.rng.choice(candidates)
        at = time.time()
        os.kill(pid, signal.SIGKILL)
        return FaultRecord(fault, f"{name} pid {pid}", at, at)

    def _broker(self, fault: str, components: dict[str, dict[str, Any]], sig: signal.Signals) -> FaultRecord:
        candidates = self._running(components, "kafka")
        if not candidates:
            return FaultRecord(fault, "broker", time.time(), time.time(), error="no broker running")
        name, _ = self.rng.choice(candidates)
        at = time.time()
        pid = kafka.signal_node(self.stack.settings.stack, _node_id(name), sig)
        return FaultRecord(fault, f"{name} pid {pid}", at, at)

    async def _pause(self, components: dict[str, dict[str, Any]]) -> FaultRecord:
        record = self._broker(kinds.PAUSE_BROKER, components, signal.SIGSTOP)
        if record.error:
            return record
        pid = int(record.target.rsplit(" ", 1)[1])
        try:
            await asyncio.sleep(self.durations.broker_pause_s)  # the fault's length, not a synchronisation
        finally:
            if pid_alive(pid):
                os.kill(pid, signal.SIGCONT)
        return FaultRecord(record.kind, record.target, record.injected_at, time.time())

    async def _postgres(self, components: dict[str, dict[str, Any]]) -> FaultRecord:
        cfg = self.stack.settings.stack
        pid = components.get("postgres", {}).get("pid")
        if not pid:
            return FaultRecord(kinds.STOP_POSTGRES, "postgres", time.time(), time.time(), error="not running")
        postgres.managed(cfg).mark_stopped()  # the supervisor leaves it down for the outage
        at = time.time()
        try:
            os.kill(pid, signal.SIGQUIT)  # immediate shutdown: what a crash leaves, recovered at start
            deadline = time.monotonic() + 30
            while pid_alive(pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.sleep(self.durations.postgres_down_s)  # the outage's length
        finally:
            await asyncio.to_thread(postgres.start, cfg)
        return FaultRecord(kinds.STOP_POSTGRES, f"postgres pid {pid}", at, time.time())

    async def _drop(self) -> FaultRecord:
        at = time.time()
        self.proxy.drop()
        try:
            await asyncio.sleep(self.durations.drop_replies_s)  # how long replies are lost
        finally:
            closed = self.proxy.heal()
        return FaultRecord(kinds.DROP_REPLIES, f"venue proxy ({closed} connections cut)", at, time.time())


async def whole(stack: DrillStack, topics: list[str]) -> str | None:
    """None when every component runs and every partition of `topics` has all its replicas in sync; else
    what is still missing."""
    components = await asyncio.to_thread(stack.components)
    down = [n for n, c in components.items() if c["state"] != "running"]
    if down:
        return f"not running: {', '.join(down)}"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.settings.bootstrap_servers, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), 10)
        described = await asyncio.wait_for(admin.describe_topics(topics), 10)
    except Exception as exc:  # a broker still electing: not whole yet
        return f"cluster metadata unavailable ({exc!r})"
    finally:
        await admin.close()
    short = [
        f"{t['topic']}[{p['partition']}]"
        for t in described
        for p in t["partitions"]
        if len(p["isr"]) < len(p["replicas"])
    ]
    return f"replicas out of sync: {', '.join(short[:5])}" if short else None
