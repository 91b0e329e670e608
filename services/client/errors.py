"""What the client raises: the API's own error (status, field, reason), a feature the server lacks, or no
answer at all. Each message is one line, so `oee order` prints it as it is."""

from __future__ import annotations

from collections.abc import Sequence

from services.failures import Failure
from services.spec.wire import Problem


class ApiError(Failure):
    """The API answered with an error: its status, its one-line `error`, and each problem's field."""

    def __init__(
        self, status: int, error: str, details: Sequence[Problem] = (), retry_after: float | None = None
    ):
        self.status = status
        self.error = error
        self.details = tuple(details)
        self.retry_after = retry_after
        fields = "; ".join(f"{p.field}: {p.message}" for p in self.details)
        super().__init__(f"{status} {error}" + (f" [{fields}]" if fields and fields not in error else ""))

    @property
    def field(self) -> str | None:
        """The field of the first problem (None when the error is about no field)."""
        return self.details[0].field if self.details else None

    @property
    def reason(self) -> str:
        """What is wrong: the first problem's message, else the error itself."""
        return self.details[0].message if self.details else self.error


class NotSupported(ApiError):
    """This server does not offer the operation (an older or smaller deployment)."""


class Unreachable(Failure):
    """The API did not answer (refused, timed out, closed): nothing is known about the request's outcome
    unless it carried an Idempotency-Key, with which it can be retried safely."""


class StreamFailed(Failure):
    """A watched stream ended without its terminal event and could not be resumed (close code and reason)."""

    def __init__(self, code: int, reason: str):
        self.code = code
        self.reason = reason
        super().__init__(f"the stream closed with {code}: {reason or 'no reason given'}")
