"""When to restart a process that exited, and when its restarts amount to a crash loop. Pure: time is given.

Backoff doubles from `backoff_min_s` up to `backoff_max_s` with each exit in a row; a run that lasted
`healthy_s` or longer resets it, so a service that fails once a day restarts at once every time. A crash loop
is `loop_restarts` restarts within `loop_window_s`: reported loudly, and restarting goes on at the capped
backoff (a dependency that comes back, a broker or the database, ends most loops by itself).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RestartPolicy:
    backoff_min_s: float = 0.5
    backoff_max_s: float = 30.0
    healthy_s: float = 60.0
    loop_restarts: int = 5
    loop_window_s: float = 120.0

    def __post_init__(self) -> None:
        if not 0 < self.backoff_min_s <= self.backoff_max_s:
            raise ValueError("backoff needs 0 < min <= max")
        if self.loop_restarts < 1 or self.loop_window_s <= 0 or self.healthy_s <= 0:
            raise ValueError("crash-loop threshold, window and healthy stretch must be positive")


@dataclass
class RestartTracker:
    """One process's restart history under a policy."""

    policy: RestartPolicy
    restarts: int = 0  # since the supervisor started
    streak: int = 0  # exits in a row, each after a run shorter than `healthy_s`
    _recent: deque[float] = field(default_factory=deque)  # when each restart within the window happened

    def exited(self, ran_for_s: float) -> float:
        """The process exited after running `ran_for_s`: how long to wait before starting it again."""
        self.streak = 1 if ran_for_s >= self.policy.healthy_s else self.streak + 1
        delay = self.policy.backoff_min_s * 2 ** min(self.streak - 1, 32)
        return min(self.policy.backoff_max_s, delay)

    def restarted(self, now: float) -> None:
        self.restarts += 1
        self._recent.append(now)
        self._trim(now)

    def recent(self, now: float) -> int:
        """Restarts within the last `loop_window_s`."""
        self._trim(now)
        return len(self._recent)

    def crash_looping(self, now: float) -> bool:
        return self.recent(now) >= self.policy.loop_restarts

    def _trim(self, now: float) -> None:
        # The deque holds at most the restarts of one window: bounded by window / min backoff.
        while self._recent and self._recent[0] <= now - self.policy.loop_window_s:
            self._recent.popleft()
