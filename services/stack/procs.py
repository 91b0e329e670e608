"""Background processes the stack starts and later stops by pid: pid files, logs, ports, readiness.

A pid file holds the pid and the process's start time (clock ticks since boot, from /proc): a pid the kernel
has since given to another process is not ours, so it is never signalled. `stop` leaves a marker that says
the process was stopped on purpose, which the supervisor reads before it restarts a broker or a database.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

_DETACHED: list[subprocess.Popen[bytes]] = []


class StackError(RuntimeError):
    """Something the operator must fix; the message is one line saying what and how."""


@dataclass(frozen=True)
class Managed:
    """A process the stack owns: its pid file and its log live under the state directory."""

    name: str
    state_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / f"{self.name}.log"

    @property
    def stopped_file(self) -> Path:
        return self.state_dir / "run" / f"{self.name}.stopped"

    def pid(self) -> int | None:
        """The pid recorded by `start`, if that process still lives (a stale pid file is removed)."""
        try:
            fields = self.pid_file.read_text().split()
            pid = int(fields[0])
            started = int(fields[1]) if len(fields) > 1 else None
        except (FileNotFoundError, ValueError, IndexError):
            return None
        if pid_alive(pid) and (started is None or process_start_time(pid) == started):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def stopped_on_purpose(self) -> bool:
        """True after `stop` until the next `start`/`record`: nobody should bring it back by itself."""
        return self.stopped_file.exists()

    def start(
        self,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        output: Path | None = None,
    ) -> int:
        """Start `argv` detached (its own session), stdout and stderr appended to `output` (the log file)."""
        output = output or self.log_file
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(output, "ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,  # survives the terminal that ran `up`; Ctrl-C there does not reach it
            )
        self.record(proc.pid)
        _DETACHED.append(
            proc
        )  # it outlives us on purpose; holding it keeps Popen from warning when collected
        return proc.pid

    def record(self, pid: int) -> None:
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        started = process_start_time(pid)
        self.pid_file.write_text(f"{pid} {started}\n" if started is not None else f"{pid}\n")
        self.stopped_file.unlink(missing_ok=True)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> bool:
        """Signal the recorded pid, wait for it to exit (SIGKILL after `timeout`). False if nothing ran."""
        return bool(stop_all([self], sig, timeout))

    def mark_stopped(self) -> None:
        self.stopped_file.parent.mkdir(parents=True, exist_ok=True)
        self.stopped_file.touch()

    def log_tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def stop_all(
    procs: Sequence[Managed], sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0
) -> list[str]:
    """Signal every recorded pid at once, wait for all to exit (SIGKILL what is left after `timeout`), mark
    each stopped on purpose; return the names that were running. Together, because the nodes of one Kafka
    cluster shut down faster side by side than one after another (each waits for the others otherwise)."""
    running = []
    for proc in procs:
        proc.mark_stopped()  # first: a supervisor must not restart it between the signal and the exit
        pid = proc.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            running.append((proc, pid))
    for proc, pid in running:
        if not wait_for(_exited(pid), timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_for(_exited(pid), 10.0)
        proc.pid_file.unlink(missing_ok=True)
    return [proc.name for proc, _ in running]


def _exited(pid: int) -> Callable[[], bool]:
    return lambda: not pid_alive(pid)


def process_start_time(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (field 22 of /proc/<pid>/stat); None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


@contextlib.contextmanager
def file_lock(path: Path, blocking: bool = True) -> Iterator[bool]:
    """An exclusive flock on `path` for the block; yields False when `blocking` is off and someone holds it.
    The kernel drops the lock when its holder dies, even by SIGKILL, so a lock never outlives its owner."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited child not yet reaped) still answers kill(0); read its state to tell.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_port_free(port: int, what: str, env_var: str) -> None:
    if not port_free(port):
        raise StackError(
            f"port {port} for {what} is already in use by another process; stop it or set {env_var} to a free port"
        )
