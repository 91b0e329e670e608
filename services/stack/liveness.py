"""Liveness: when a supervised service that is alive but does not answer counts as hung. Pure: time is given.

A process stopped by SIGSTOP, or one whose event loop is stuck, does not exit, so waiting for its exit never
restarts it. The supervisor probes each service over HTTP every `interval_s` (`Probe`: where) and gives each
answer, or its absence, to a `LivenessTracker`; after `failures` failed probes in a row it kills the process,
and the normal restart (with backoff) takes over. A probe that fails within `grace_s` of the process's start
does not count: a service still starting (joining its group, creating its pool) is not hung. Any complete HTTP
answer is alive, whatever its status: liveness is "it answers", not "it is ready" (a 503 while the broker is
away must not get a service killed; the broker coming back fixes that, a restart does not).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LivenessPolicy:
    interval_s: float = 5.0  # 0: no probes
    timeout_s: float = 3.0
    failures: int = 4
    grace_s: float = 30.0

    def __post_init__(self) -> None:
        if self.interval_s < 0 or self.timeout_s <= 0 or self.failures < 1 or self.grace_s < 0:
            raise ValueError("liveness needs interval >= 0, timeout > 0, failures >= 1, grace >= 0")

    @property
    def enabled(self) -> bool:
        return self.interval_s > 0


@dataclass(frozen=True)
class Probe:
    """Where a service answers: `GET http://host:port/path`."""

    host: str
    port: int
    path: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path}"


def probe_for(http_port: int | None, http_host: str, metrics_port: int | None) -> Probe | None:
    """A service's probe: `/health` where it serves HTTP, else its `/metrics` port; None when
    it has neither (a metrics port of 0 is off: such a service is only watched for its exit)."""
    if http_port:
        return Probe(http_host, http_port, "/health")
    if metrics_port:
        return Probe(http_host, metrics_port, "/metrics")
    return None


@dataclass
class LivenessTracker:
    """One service's probe results under a policy, for the process started at `started_at`."""

    policy: LivenessPolicy
    started_at: float = 0.0  # monotonic
    failed: int = 0  # failed probes in a row that count (outside the start grace)
    last_failure: str | None = None

    def started(self, now: float) -> None:
        """A new process: its predecessor's failures are not its own."""
        self.started_at, self.failed, self.last_failure = now, 0, None

    def answered(self) -> None:
        self.failed, self.last_failure = 0, None

    def no_answer(self, now: float, why: str) -> bool:
        """A probe failed (`why`); True when the process is to be killed as hung."""
        if now - self.started_at < self.policy.grace_s:
            return False  # still starting: not yet expected to answer
        self.failed += 1
        self.last_failure = why
        return self.failed >= self.policy.failures
