"""Dead letters as operators see them, from both places they are kept. Pure: no I/O.

- `router/P/O`: the record at partition P, offset O of the dead-letter topic (`orders.deadletter`), set aside
  by the router (an intake record it could not decode or did not expect), its `dlq.*` headers saying where
  it came from and why.
- `projector/P/O`: the record at partition P, offset O of the event log that the projector could not apply
  (a row of `projector_dead_letters`: undecodable, a seq gap, an illegal transition).

A replay appends the record, unchanged, to the topic and partition it came from, with a `dlq.replay.of`
header naming the dead letter; its consumer then treats it like any other record. See decision 0022.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from events.topics import DLQ_HEADERS, DLQ_REPLAY_OF

Source = Literal["router", "projector"]
_ID = re.compile(r"(router|projector)/(\d{1,9})/(\d{1,18})")
PREVIEW_BYTES = 2048
MAX_LIST = 1000


class BadId(ValueError):
    """Not a dead letter id."""


def parse_id(raw: str) -> tuple[Source, int, int]:
    """`router/P/O` or `projector/P/O` -> (source, partition, offset)."""
    m = _ID.fullmatch(raw.strip())
    if m is None:
        raise BadId(
            f"{raw[:60]!r} is not a dead letter id: router/PARTITION/OFFSET or projector/PARTITION/OFFSET"
        )
    return m.group(1), int(m.group(2)), int(m.group(3))  # type: ignore[return-value]


def make_id(source: Source, partition: int, offset: int) -> str:
    return f"{source}/{partition}/{offset}"


@dataclass(frozen=True)
class Replay:
    """What the replays table says of a dead letter."""

    state: Literal["sending", "replayed"]
    target_topic: str
    target_partition: int
    target_from: int
    target_offset: int | None
    claimed_at: datetime
    replayed_at: datetime | None
    claimed_by: str

    def line(self) -> str:
        if self.state == "replayed":
            when = self.replayed_at.isoformat(timespec="seconds") if self.replayed_at else "?"
            return f"replayed {when} as {self.target_topic}[{self.target_partition}]@{self.target_offset}"
        return f"replay under way or outcome unknown since {self.claimed_at.isoformat(timespec='seconds')}"


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter: where it is, where it came from, why, and the record itself."""

    source: Source
    topic: str  # where it is kept: the dead-letter topic, or the log the projector read
    partition: int
    offset: int
    at: datetime | None  # when it was set aside
    origin_topic: str  # where it came from (and where a replay goes)
    origin_partition: int
    origin_offset: int
    reason: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    replay: Replay | None = None
    replay_of: str | None = None  # this record is itself the replayed copy of that dead letter
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return make_id(self.source, self.partition, self.offset)

    @property
    def origin(self) -> str:
        return f"{self.origin_topic}[{self.origin_partition}]@{self.origin_offset}"

    def replay_headers(self) -> list[tuple[str, bytes]]:
        """The headers the replayed copy carries: the original ones (no `dlq.*`), plus `dlq.replay.of`."""
        kept = [(k, v) for k, v in self.headers if k not in DLQ_HEADERS and k != DLQ_REPLAY_OF]
        return [*kept, (DLQ_REPLAY_OF, self.id.encode())]


def one_line(text: str, limit: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def list_line(d: DeadLetter) -> str:
    """One line of `oee deadletters list`."""
    when = d.at.isoformat(timespec="seconds") if d.at else "-"
    state = d.replay.state if d.replay else ("replay-of " + d.replay_of if d.replay_of else "-")
    return f"{d.id:<22} {when:<25} {d.origin:<38} {state:<24} {one_line(d.reason, 80)}"


LIST_HEADER = f"{'ID':<22} {'SET ASIDE':<25} {'FROM':<38} {'REPLAY':<24} REASON"


def preview(value: bytes | None, limit: int = PREVIEW_BYTES) -> str:
    """The record's value as text when it is text (cut to `limit` bytes), else hex."""
    if value is None:
        return "(null)"
    cut = value[:limit]
    more = f" ... ({len(value)} bytes in all)" if len(value) > limit else ""
    try:
        text = cut.decode("utf-8")
    except UnicodeDecodeError:
        return cut.hex() + more + " (hex: not UTF-8)"
    if any(ord(c) < 32 and c not in "\t\n\r" for c in text):
        return repr(text) + more
    return text + more


def show(d: DeadLetter) -> str:
    """`oee deadletters show`: everything known about one dead letter."""
    lines = [
        f"id          {d.id}",
        f"kept in     {d.topic}[{d.partition}]@{d.offset}"
        + (" (projector_dead_letters)" if d.source == "projector" else ""),
        f"set aside   {d.at.isoformat(timespec='milliseconds') if d.at else '-'}",
        f"came from   {d.origin}",
        f"reason      {d.reason}",
        f"key         {preview(d.key, 200)}",
    ]
    if d.replay_of:
        lines.append(f"replay of   {d.replay_of} (this record is a replayed copy that failed again)")
    lines.append(f"replay      {d.replay.line() if d.replay else 'never replayed'}")
    for name, value in d.headers:
        lines.append(f"header      {name}: {preview(value, 200)}")
    for label, text in d.extra.items():
        lines.append(f"{label:<11} {text}")
    lines.append("value")
    lines.append(preview(d.value))
    return "\n".join(lines)
