"""The supervisor: keeps processes running, restarts them with capped backoff, reports crash loops.

It keeps two kinds of things running:

- **services**, its own children (`oee venue`, `oee router`, ...). Their stdout and stderr go through one
  pipe into a size-rotated log (`RotatingLog`); an exit is seen the moment it happens. A service is
  `running` once its HTTP port accepts (or, without one, once it has lived `SETTLE_S`).
- **infrastructure** the stack started (Kafka nodes, PostgreSQL): detached processes it does not own
  (PostgreSQL daemonizes; brokers outlive a supervisor that dies), watched by pid file every
  `WATCH_INTERVAL_S` and started again through the stack's own start functions, unless they were stopped on
  purpose (`oee stack down`, `oee down` leave a marker).

A service that runs but does not answer (SIGSTOPped, its loop stuck) never exits by itself: each one with an
HTTP port (`/health`) or a metrics port (`/metrics`) is probed every `SUPERVISOR_PROBE_INTERVAL_S`, and
after `SUPERVISOR_PROBE_FAILURES` failed probes in a row past its start grace it is logged as hung, SIGKILLed
and restarted like any exit (`liveness.py` decides; the probes run as tasks of their own, never in the way of
the loop). Hung kills are counted apart from restarts.

Every change is published as a snapshot: a JSON file that `oee status` and the API's /metrics read, and the
supervisor's own /metrics. Restarts are counted per component; `RestartTracker` decides the backoff and the
crash loop, which is logged at ERROR on every restart while it lasts and shown in status and metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from services.stack.liveness import LivenessPolicy, LivenessTracker, Probe
from services.stack.procs import Managed
from services.stack.restarts import RestartPolicy, RestartTracker
from services.stack.rotating_log import RotatingLog

log = logging.getLogger("oee.supervisor")

SUPERVISOR = "supervisor"  # its pid file, log and lock names under the state directory
SETTLE_S = 2.0  # a service without a port counts as running once it has lived this long
WATCH_INTERVAL_S = 0.5  # how often the pid of a broker or the database is checked
READ_CHUNK = 64 * 1024
LAST_LINE_CHARS = 300  # the tail of a child's output quoted when it crash-loops
# A line that says why a child died: an ERROR/CRITICAL log line (text or JSON), a traceback's last line, or
# the one-line error of an `oee` command ("oee venue: VENUE_PORT=... is not an integer").
_ERROR_WORDS = re.compile(
    rb'\s(ERROR|CRITICAL)\s|"level": ?"(error|critical)"|^Traceback|^[\w.]*(Error|Exception)\b|^oee [\w-]+: '
)


@dataclass(frozen=True)
class ServiceSpec:
    """A child process to keep running."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    ready_port: int | None = None
    ready_host: str = "127.0.0.1"
    probe: Probe | None = None  # where its liveness is probed; None: only its exit is watched


@dataclass(frozen=True)
class InfraSpec:
    """A detached process the stack starts (a broker node, the database), watched by pid."""

    name: str
    kind: str  # "broker" or "database"
    pid: Callable[[], int | None]
    stopped_on_purpose: Callable[[], bool]
    start: Callable[[], int]  # blocking: starts it, returns its pid once it answers; raises when it cannot
    log: Path | None = None  # where it logs (default: logs/<name>.log)


@dataclass
class ComponentStatus:
    """One component as `oee status` and the metrics show it."""

    name: str
    kind: str  # "service", "broker" or "database"
    state: str = "starting"  # starting, running, backoff, stopped
    pid: int | None = None
    restarts: int = 0
    recent_restarts: int = 0  # within the crash-loop window
    crash_loop: bool = False
    last_exit: str | None = None  # "exit code 1", "killed by SIGKILL", "gone"
    last_exit_at: float | None = None  # wall clock
    running_since: float | None = None  # wall clock
    next_start_at: float | None = None  # wall clock, while in backoff
    log: str | None = None
    address: str | None = None  # where a service answers HTTP
    hung: int = 0  # times it was killed for not answering its liveness probe (each also a restart)
    probe_failures: int = 0  # liveness probes failed in a row, now (0 while it answers)
    probe: str | None = None  # the URL of its liveness probe


def is_error_line(line: bytes) -> bool:
    return _ERROR_WORDS.search(line) is not None


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


@dataclass
class Supervisor:
    services: Sequence[ServiceSpec]
    infra: Sequence[InfraSpec]
    policy: RestartPolicy
    state_dir: Path
    log_max_bytes: int
    log_backups: int
    stop_timeout_s: float = 20.0
    snapshot_file: Path | None = None
    metrics_url: str | None = None
    liveness: LivenessPolicy = field(default_factory=LivenessPolicy)
    _hung: set[str] = field(default_factory=set)  # children killed as hung whose exit is not yet recorded
    _status: dict[str, ComponentStatus] = field(default_factory=dict)
    _trackers: dict[str, RestartTracker] = field(default_factory=dict)
    _children: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    _last_line: dict[str, str] = field(default_factory=dict)
    _last_error: set[str] = field(default_factory=set)  # children whose remembered line is an error line
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    snapshot: dict[str, Any] = field(default_factory=dict)  # the latest published, for the metrics thread

    def __post_init__(self) -> None:
        for spec in self.services:
            address = f"http://{spec.ready_host}:{spec.ready_port}" if spec.ready_port else None
            self._add(spec.name, "service", self.state_dir / "logs" / f"{spec.name}.log", address)
            if spec.probe is not None and self.liveness.enabled:
                self._status[spec.name].probe = spec.probe.url
        for infra in self.infra:
            self._add(infra.name, infra.kind, infra.log or self.state_dir / "logs" / f"{infra.name}.log")

    def _add(self, name: str, kind: str, log_file: Path, address: str | None = None) -> None:
        self._status[name] = ComponentStatus(name, kind, log=str(log_file), address=address)
        self._trackers[name] = RestartTracker(self.policy)

    # -- the loop -------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Keep everything running until `stop` is set; then stop the services (last started first)."""
        self._stop = stop
        self._publish()
        keepers = [asyncio.create_task(self._keep(spec), name=f"keep-{spec.name}") for spec in self.services]
        watchers = [asyncio.create_task(self._watch(spec), name=f"watch-{spec.name}") for spec in self.infra]
        watchers.append(asyncio.create_task(self._refresh(), name="refresh"))
        if self.liveness.enabled:
            watchers += [
                asyncio.create_task(self._probe_loop(spec, spec.probe), name=f"probe-{spec.name}")
                for spec in self.services
                if spec.probe is not None
            ]
        try:
            await stop.wait()
        finally:
            stop.set()
            for spec in reversed(self.services):
                await self._terminate(spec.name)
            # Each keeper ends once its child has exited (one that was starting is stopped as it appears).
            late: set[asyncio.Task[None]] = set()
            if keepers:
                _, late = await asyncio.wait(keepers, timeout=self.stop_timeout_s + 10)
            for task in [*late, *watchers]:
                task.cancel()
            await asyncio.gather(*keepers, *watchers, return_exceptions=True)
            for status in self._status.values():
                if status.kind == "service":
                    status.state, status.pid = "stopped", None
            self._publish()

    @property
    def _stopping(self) -> bool:
        return self._stop.is_set()

    async def _keep(self, spec: ServiceSpec) -> None:
        status, tracker = self._status[spec.name], self._trackers[spec.name]
        output = RotatingLog(Path(str(status.log)), self.log_max_bytes, self.log_backups)
        managed = Managed(spec.name, self.state_dir)
        try:
            while not self._stopping:
                started = time.monotonic()
                try:
                    returncode = await self._run_once(spec, output, managed)
                except Exception:  # a bug of ours must not end the supervision of this child
                    log.exception("supervising %s failed; starting it again", spec.name)
                    returncode = 127
                ran_for = time.monotonic() - started
                status.last_exit, status.last_exit_at = describe_exit(returncode), time.time()
                if spec.name in self._hung:
                    self._hung.discard(spec.name)
                    status.last_exit = (
                        f"hung (no answer to {self.liveness.failures} probes), {status.last_exit}"
                    )
                status.probe_failures = 0
                status.pid, status.running_since = None, None
                managed.pid_file.unlink(missing_ok=True)
                if self._stopping:
                    break
                await self._back_off(spec.name, tracker.exited(ran_for), ran_for)
                if self._stopping:
                    break
                self._restarting(spec.name)
        finally:
            output.close()

    async def _run_once(self, spec: ServiceSpec, output: RotatingLog, managed: Managed) -> int:
        """Start the child, follow it to its exit; its return code (127: it could not be started)."""
        status = self._status[spec.name]
        try:
            proc = await asyncio.create_subprocess_exec(
                *spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=dict(spec.env),
            )
        except OSError as exc:
            log.error("could not start %s: %s", spec.name, exc)
            return 127
        self._children[spec.name] = proc
        managed.record(proc.pid)
        if self._stopping:  # the stop came while it was being started: it must not outlive us
            proc.terminate()
        status.state, status.pid, status.running_since = "starting", proc.pid, time.time()
        status.next_start_at = None
        self._publish()
        restart = f", restart {status.restarts}" if status.restarts else ""
        _write(
            output, spec.name, f"--- oee supervisor: started {spec.name} (pid {proc.pid}{restart})\n".encode()
        )
        assert proc.stdout is not None
        pump = asyncio.create_task(self._pump(spec.name, proc.stdout, output))
        ready = asyncio.create_task(self._mark_ready(spec, proc))
        try:
            returncode = await proc.wait()
        finally:
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
            # A grandchild holding the pipe open must not hold us: give the pump a moment, then leave it.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(pump), 2.0)
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            self._children.pop(spec.name, None)
        return returncode

    async def _pump(self, name: str, stream: asyncio.StreamReader, output: RotatingLog) -> None:
        self._last_line.pop(name, None)  # what a crash-loop report quotes comes from the latest run
        self._last_error.discard(name)
        while chunk := await stream.read(READ_CHUNK):
            _write(output, name, chunk)
            self._remember_last_line(name, chunk)

    def _remember_last_line(self, name: str, chunk: bytes) -> None:
        """The line that best says why a child died: its last error line, else its last line."""
        lines = [line for line in chunk.splitlines() if line.strip()]
        errors = [line for line in lines if is_error_line(line)]
        pick = errors[-1] if errors else (lines[-1] if lines and name not in self._last_error else None)
        if pick is not None:
            text = pick[-LAST_LINE_CHARS:].decode("utf-8", "replace")
            self._last_line[name] = text
            if errors:
                self._last_error.add(name)

    async def _mark_ready(self, spec: ServiceSpec, proc: asyncio.subprocess.Process) -> None:
        if spec.ready_port is None:
            await asyncio.sleep(SETTLE_S)  # a timer, not a synchronisation: "alive this long" is the check
        else:
            while not await _port_accepts(spec.ready_port, spec.ready_host):
                await asyncio.sleep(0.2)
        if proc.returncode is None:
            self._status[spec.name].state = "running"
            self._publish()

    async def _probe_loop(self, spec: ServiceSpec, probe: Probe) -> None:
        """Probe the service every interval while its process runs; kill it once the tracker says hung."""
        status, policy = self._status[spec.name], self.liveness
        tracker = LivenessTracker(policy)
        pid: int | None = None
        last = time.monotonic()
        while not self._stopping:
            # Start to start: a probe that times out does not stretch the interval (4 misses = 3 intervals
            # plus one timeout after the first).
            wait = max(0.0, last + policy.interval_s - time.monotonic())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wait)  # a stop cuts the wait short
            last = time.monotonic()
            proc = self._children.get(spec.name)
            if self._stopping or proc is None or proc.returncode is not None or spec.name in self._hung:
                continue
            if proc.pid != pid:  # a new process: its grace counts from when this loop first sees it
                pid = proc.pid
                tracker.started(time.monotonic())
            why = await http_probe(probe, policy.timeout_s)
            if proc.returncode is not None or self._stopping:
                continue  # it exited meanwhile: its exit is what counts
            if why is None:
                if tracker.failed:
                    log.info("%s answers its liveness probe again", spec.name, extra={"component": spec.name})
                tracker.answered()
            elif tracker.no_answer(time.monotonic(), why):
                self._kill_hung(spec.name, proc, tracker)
            if status.probe_failures != tracker.failed:
                status.probe_failures = tracker.failed
                self._publish()

    def _kill_hung(self, name: str, proc: asyncio.subprocess.Process, tracker: LivenessTracker) -> None:
        status = self._status[name]
        log.error(
            "%s did not answer its liveness probe %d times in a row: killing it (pid %d; probe %s, every "
            "%g s, timeout %g s; last failure: %s)",
            name,
            tracker.failed,
            proc.pid,
            status.probe,
            self.liveness.interval_s,
            self.liveness.timeout_s,
            tracker.last_failure,
            extra={"component": name},
        )
        self._hung.add(name)
        status.hung += 1
        with contextlib.suppress(ProcessLookupError):
            proc.kill()  # SIGKILL ends a stopped process too; `_keep` sees the exit and restarts it

    async def _watch(self, spec: InfraSpec) -> None:
        status, tracker = self._status[spec.name], self._trackers[spec.name]
        seen_since = time.monotonic()
        while True:
            try:
                pid, on_purpose = spec.pid(), spec.stopped_on_purpose()
            except OSError as exc:  # the state directory unreadable for a moment: look again
                log.warning("cannot read %s's pid file: %s", spec.name, exc)
                await asyncio.sleep(WATCH_INTERVAL_S)
                continue
            if pid is not None:
                if status.pid != pid or status.state != "running":
                    status.state, status.pid, status.running_since = "running", pid, time.time()
                    seen_since = time.monotonic()
                    self._publish()
                await asyncio.sleep(WATCH_INTERVAL_S)
                continue
            if on_purpose:
                if status.state != "stopped":
                    status.state, status.pid, status.running_since = "stopped", None, None
                    self._publish()
                await asyncio.sleep(WATCH_INTERVAL_S)
                continue
            ran_for = time.monotonic() - seen_since
            if status.state != "starting":  # a failed start was already recorded below
                status.last_exit, status.last_exit_at = "gone", time.time()
            status.pid, status.running_since = None, None
            await self._back_off(spec.name, tracker.exited(ran_for), ran_for)
            if spec.pid() is not None or spec.stopped_on_purpose():
                continue  # someone else started or stopped it meanwhile
            self._restarting(spec.name)
            status.state = "starting"
            self._publish()
            try:
                pid = await asyncio.to_thread(spec.start)
            except Exception as exc:
                status.last_exit, status.last_exit_at = f"restart failed: {exc}"[:300], time.time()
                log.error("could not restart %s: %s", spec.name, exc)
            seen_since = time.monotonic()

    async def _back_off(self, name: str, delay: float, ran_for: float) -> None:
        status = self._status[name]
        status.state, status.next_start_at = "backoff", time.time() + delay
        log.warning(
            "%s %s after %.1f s; starting it again in %.1f s",
            name,
            status.last_exit or "exited",
            ran_for,
            delay,
            extra={"component": name},
        )
        self._publish()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)  # a backoff timer that a stop cuts short

    def _restarting(self, name: str) -> None:
        status, tracker = self._status[name], self._trackers[name]
        now = time.monotonic()
        tracker.restarted(now)
        status.restarts = tracker.restarts
        status.recent_restarts = tracker.recent(now)
        status.crash_loop = tracker.crash_looping(now)
        if status.crash_loop:
            # Loud on every restart while it lasts: a loop that only logged once would look like silence.
            log.error(
                "%s is crash-looping: %d restarts in the last %.0f s (last exit: %s); still restarting it, "
                "at most every %g s; its log: %s; its last error: %s",
                name,
                status.recent_restarts,
                self.policy.loop_window_s,
                status.last_exit,
                self.policy.backoff_max_s,
                status.log,
                self._last_line.get(name, "(none)"),
                extra={"component": name, "restarts": status.restarts},
            )
        else:
            log.info("restarting %s (restart %d)", name, status.restarts, extra={"component": name})

    async def _refresh(self) -> None:
        """The crash-loop window slides with time, not only with events: re-judge it every second."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            changed = False
            for name, status in self._status.items():
                tracker = self._trackers[name]
                recent, looping = tracker.recent(now), tracker.crash_looping(now)
                if (recent, looping) != (status.recent_restarts, status.crash_loop):
                    if status.crash_loop and not looping:
                        log.warning("%s is no longer crash-looping", name, extra={"component": name})
                    status.recent_restarts, status.crash_loop = recent, looping
                    changed = True
            if changed:
                self._publish()

    async def _terminate(self, name: str) -> None:
        proc = self._children.get(name)
        if proc is None or proc.returncode is not None:
            return
        log.info("stopping %s (pid %d)", name, proc.pid)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.stop_timeout_s)
        except TimeoutError:
            log.warning("%s did not stop within %.0f s of SIGTERM: SIGKILL", name, self.stop_timeout_s)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    # -- what others read -----------------------------------------------------------------------------------

    def _publish(self) -> None:
        snapshot = {
            "supervisor": {
                "pid": os.getpid(),
                "metrics": self.metrics_url,
                "crash_loop_window_s": self.policy.loop_window_s,
                "updated_at": time.time(),
            },
            "components": [asdict(s) for s in self._status.values()],
        }
        self.snapshot = snapshot
        if self.snapshot_file is not None:
            write_snapshot(self.snapshot_file, snapshot)


def _write(output: RotatingLog, name: str, data: bytes) -> None:
    try:
        output.write(data)
    except OSError as exc:  # a full disk must not stop the child: its pipe keeps draining
        log.warning("writing %s's log failed: %s", name, exc)


async def http_probe(probe: Probe, timeout_s: float) -> str | None:
    """GET the probe's URL; None when an HTTP answer (any status) came within `timeout_s`, else why not."""

    async def ask() -> bytes:
        reader, writer = await asyncio.open_connection(probe.host, probe.port)
        try:
            writer.write(
                f"GET {probe.path} HTTP/1.1\r\nHost: {probe.host}:{probe.port}\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            return await reader.readline()  # the status line is enough: it answered
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    try:
        line = await asyncio.wait_for(ask(), timeout_s)
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    return None if line.startswith(b"HTTP/") else f"not an HTTP answer: {line[:60]!r}"


async def _port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (TimeoutError, OSError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def write_snapshot(path: Path, snapshot: Mapping[str, Any]) -> None:
    """Atomically (a reader sees the old file or the new one, never half of one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    scratch.write_text(json.dumps(snapshot, indent=1) + "\n")
    os.replace(scratch, path)


def snapshot_path(state_dir: Path) -> Path:
    return state_dir / "run" / "supervisor.json"


def read_snapshot(state_dir: Path) -> dict[str, Any] | None:
    """The running supervisor's last snapshot; None when no supervisor runs (a dead one's says nothing now)."""
    pid = Managed(SUPERVISOR, state_dir).pid()
    if pid is None:
        return None
    try:
        snapshot: dict[str, Any] = json.loads(snapshot_path(state_dir).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return snapshot if snapshot.get("supervisor", {}).get("pid") == pid else None
