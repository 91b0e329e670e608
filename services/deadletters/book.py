"""What `oee deadletters` does: list, show and replay dead letters, each replay at most once.

A replay (decision 0022):

1. The dead letter is read where it is kept, and the replays table (`oee_state.dead_letter_replays`) asked.
   Replayed already: refused, saying when and where the copy landed.
2. A claim is written first (`INSERT ... ON CONFLICT DO NOTHING`), with the target partition's end offset.
   Someone else's claim: refused.
3. The record, unchanged (key, value, original headers), is appended to the topic and partition it came from
   with the header `dlq.replay.of: <id>`, by an idempotent producer (acks=all).
4. The claim is completed with the copy's offset.

If the answer to 3 is lost, the claim stays `sending`: the next `replay` of that id looks the copy up in the
target partition (from the claimed end offset, by its header) and completes the claim if it is there; only a
claim older than `STALE_CLAIM_S` with no copy in the log is sent again. So no dead letter is ever appended
twice, and none is lost to a crash between the claim and the send.
"""

from __future__ import annotations

import asyncio
import getpass
import socket
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import asyncpg
from aiokafka import AIOKafkaProducer

from events.topics import Topics
from projections.migrations import migrate_state
from services.config import Settings
from services.deadletters import sources
from services.deadletters.model import MAX_LIST, DeadLetter, Replay, Source, make_id, parse_id
from services.failures import Failure

STALE_CLAIM_S = 120.0
"""A claim still `sending` after this long, whose copy is not in the log, was lost: it may be sent again.
Longer than the producer's delivery timeout (`SEND_TIMEOUT_S` plus its retries)."""
SEND_TIMEOUT_S = 30.0


class Refused(Failure):
    """The dead letter cannot be replayed (again, or now): the message says why."""


@dataclass(frozen=True)
class Where:
    """The deployment's places: its topics and the projection schema."""

    bootstrap: str
    database_url: str
    topics: Topics
    schema: str

    @classmethod
    def of(cls, settings: Settings, schema: str) -> Where:
        return cls(
            settings.bootstrap_servers,
            settings.database_url,
            Topics.with_prefix(settings.topic_prefix),
            schema,
        )

    def source_key(self, source: Source) -> str:
        """The replays table's `source` column: the router's, or the projector's of this schema."""
        return "router" if source == "router" else f"projector:{self.schema}"

    def kept_in(self, source: Source) -> str:
        return self.topics.dead_letters if source == "router" else self.topics.events


# -- the replays table ----------------------------------------------------------------------------------------
_COLUMNS = (
    "state, target_topic, target_partition, target_from, target_offset, claimed_at, replayed_at, claimed_by"
)


def _replay(row: asyncpg.Record) -> Replay:
    return Replay(
        row["state"],
        row["target_topic"],
        row["target_partition"],
        row["target_from"],
        row["target_offset"],
        row["claimed_at"],
        row["replayed_at"],
        row["claimed_by"],
    )


async def _replays(conn: asyncpg.Connection, where: Where, source: Source) -> dict[tuple[int, int], Replay]:
    rows = await conn.fetch(
        f'SELECT partition, "offset", {_COLUMNS} FROM oee_state.dead_letter_replays WHERE source = $1 AND topic = $2',
        where.source_key(source),
        where.kept_in(source),
    )
    return {(r["partition"], r["offset"]): _replay(r) for r in rows}


async def _copies(conn: asyncpg.Connection, topic: str) -> dict[tuple[int, int], str]:
    """(partition, offset) of every replayed copy in `topic` -> the id of the dead letter it replays."""
    rows = await conn.fetch(
        "SELECT id, target_partition, target_offset FROM oee_state.dead_letter_replays "
        "WHERE target_topic = $1 AND target_offset IS NOT NULL",
        topic,
    )
    return {(r["target_partition"], r["target_offset"]): r["id"] for r in rows}


async def _connect(where: Where) -> asyncpg.Connection:
    from projections.db import dsn

    await migrate_state(dsn(where.database_url))  # the replays table exists before anything reads it
    return await asyncpg.connect(dsn(where.database_url))


# -- list and show ----------------------------------------------------------------------------------------------
async def listing(where: Where, source: Source | None, limit: int) -> list[DeadLetter]:
    """The newest dead letters (at most `limit` of each source asked), newest first, with their replay state."""
    limit = max(1, min(limit, MAX_LIST))
    found: list[DeadLetter] = []
    conn = await _connect(where)
    try:
        if source in (None, "router"):
            replays = await _replays(conn, where, "router")
            records = await sources.read_tail(where.bootstrap, where.topics.dead_letters, limit)
            for record in records:
                d = sources.from_dead_letter_record(record)
                found.append(replace(d, replay=replays.get((d.partition, d.offset))))
        if source in (None, "projector"):
            replays = await _replays(conn, where, "projector")
            copies = await _copies(conn, where.topics.events)
            for row in await sources.projector_rows(conn, where.schema, where.topics.events, limit):
                d = sources.from_projector_row(row, where.topics.events, where.schema)
                key = (d.partition, d.offset)
                found.append(replace(d, replay=replays.get(key), replay_of=copies.get(key)))
    finally:
        await conn.close()
    found.sort(key=lambda d: d.at or datetime.min.replace(tzinfo=UTC), reverse=True)
    return found[: limit if source is not None else 2 * limit]


async def find(where: Where, dead_letter_id: str) -> DeadLetter:
    """One dead letter by id, with its replay state; `Refused` when there is none."""
    source, partition, offset = parse_id(dead_letter_id)
    conn = await _connect(where)
    try:
        replay = (await _replays(conn, where, source)).get((partition, offset))
        if source == "router":
            try:
                record = await sources.read_one(where.bootstrap, where.topics.dead_letters, partition, offset)
            except sources.NotFound as exc:
                raise Refused(f"no dead letter {dead_letter_id}: {exc}") from None
            return replace(sources.from_dead_letter_record(record), replay=replay)
        row = await sources.projector_row(conn, where.schema, where.topics.events, partition, offset)
        if row is None:
            raise Refused(
                f"no dead letter {dead_letter_id} in {where.schema}.projector_dead_letters for {where.topics.events}"
            )
        d = sources.from_projector_row(row, where.topics.events, where.schema)
        copies = await _copies(conn, where.topics.events)
        # The log still has the record itself: its key and headers go with a replay.
        try:
            original = await sources.read_one(where.bootstrap, d.topic, partition, offset)
            d = replace(d, key=original.key, headers=tuple((k, v or b"") for k, v in original.headers))
        except sources.NotFound:
            d = replace(d, key=sources.key_of(d.value))
        return replace(d, replay=replay, replay_of=copies.get((partition, offset)))
    finally:
        await conn.close()


# -- replay ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Replayed:
    dead_letter: str
    topic: str
    partition: int
    offset: int
    found: bool  # an earlier attempt's copy was found in the log (nothing was sent now)


async def replay(where: Where, dead_letter_id: str, now: datetime | None = None) -> Replayed:
    """Append the dead letter once to where it came from, recorded as such; `Refused` if it cannot be."""
    d = await find(where, dead_letter_id)
    if d.origin_partition < 0 or d.origin_offset < 0 or d.origin_topic in ("", "?"):
        raise Refused(
            f"{d.id} does not say where it came from (no dlq.source.* headers): nowhere to replay it"
        )
    if d.origin_topic not in (where.topics.requests, where.topics.events):
        raise Refused(
            f"{d.id} came from {d.origin_topic}, not a topic of this deployment ({where.topics.requests})"
        )
    conn = await _connect(where)
    try:
        claimed = await _claim(conn, where, d)
        if claimed is None:
            existing = await _current(conn, where, d)
            return await _resume(conn, where, d, existing, now or datetime.now(UTC))
        return await _send(conn, where, d, claimed)
    finally:
        await conn.close()


async def _claim(conn: asyncpg.Connection, where: Where, d: DeadLetter) -> int | None:
    """Claim the replay (the target partition's end offset goes with it); None when it was claimed before."""
    start = await sources.end_offset(where.bootstrap, d.origin_topic, d.origin_partition)
    inserted = await conn.fetchval(
        'INSERT INTO oee_state.dead_letter_replays (source, topic, partition, "offset", id, state, target_topic, '
        "target_partition, target_from, claimed_by) VALUES ($1, $2, $3, $4, $5, 'sending', $6, $7, $8, $9) "
        "ON CONFLICT DO NOTHING RETURNING target_from",
        where.source_key(d.source),
        d.topic,
        d.partition,
        d.offset,
        d.id,
        d.origin_topic,
        d.origin_partition,
        start,
        _operator(),
    )
    return None if inserted is None else int(inserted)


async def _current(conn: asyncpg.Connection, where: Where, d: DeadLetter) -> Replay:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM oee_state.dead_letter_replays WHERE source = $1 AND topic = $2 AND partition = $3 "
        'AND "offset" = $4',
        where.source_key(d.source),
        d.topic,
        d.partition,
        d.offset,
    )
    assert row is not None, "a claim that conflicted exists"
    return _replay(row)


async def _resume(
    conn: asyncpg.Connection, where: Where, d: DeadLetter, r: Replay, now: datetime
) -> Replayed:
    """A claim exists: refuse a done replay; look an unknown outcome up; take over a lost one."""
    if r.state == "replayed":
        raise Refused(f"{d.id} was {r.line()} by {r.claimed_by}: a dead letter is replayed at most once")
    found = await sources.find_replay(
        where.bootstrap, r.target_topic, r.target_partition, r.target_from, d.id
    )
    if found is not None:
        await _complete(conn, where, d, found)
        return Replayed(d.id, r.target_topic, r.target_partition, found, found=True)
    if now - r.claimed_at < timedelta(seconds=STALE_CLAIM_S):
        raise Refused(
            f"{d.id} is being replayed by {r.claimed_by} since {r.claimed_at.isoformat(timespec='seconds')} "
            f"(or that attempt's answer was lost): retry after {STALE_CLAIM_S:g} s"
        )
    # The earlier attempt is over and its copy is not in the log: it never landed. Take the claim over.
    start = await sources.end_offset(where.bootstrap, d.origin_topic, d.origin_partition)
    taken = await conn.fetchval(
        "UPDATE oee_state.dead_letter_replays SET target_from = $5, claimed_at = now(), claimed_by = $6 "
        "WHERE source = $1 AND topic = $2 AND partition = $3 AND \"offset\" = $4 AND state = 'sending' "
        "AND claimed_at = $7 RETURNING target_from",
        where.source_key(d.source),
        d.topic,
        d.partition,
        d.offset,
        start,
        _operator(),
        r.claimed_at,
    )
    if taken is None:
        raise Refused(f"{d.id}: another replay took it over just now")
    return await _send(conn, where, d, int(taken))


async def _send(conn: asyncpg.Connection, where: Where, d: DeadLetter, start: int) -> Replayed:
    producer = AIOKafkaProducer(
        bootstrap_servers=where.bootstrap, acks="all", enable_idempotence=True, request_timeout_ms=10_000
    )
    await producer.start()
    try:
        meta = await asyncio.wait_for(
            producer.send_and_wait(
                d.origin_topic, d.value, key=d.key, partition=d.origin_partition, headers=d.replay_headers()
            ),
            SEND_TIMEOUT_S,
        )
    except Exception as exc:
        raise Refused(
            f"the replay of {d.id} may or may not have landed ({type(exc).__name__}: {exc}); run the same "
            "command again: it looks the copy up and never sends it twice"
        ) from exc
    finally:
        await producer.stop()
    await _complete(conn, where, d, meta.offset)
    return Replayed(d.id, d.origin_topic, d.origin_partition, meta.offset, found=False)


async def _complete(conn: asyncpg.Connection, where: Where, d: DeadLetter, offset: int) -> None:
    await conn.execute(
        "UPDATE oee_state.dead_letter_replays SET state = 'replayed', target_offset = $5, replayed_at = now() "
        'WHERE source = $1 AND topic = $2 AND partition = $3 AND "offset" = $4',
        where.source_key(d.source),
        d.topic,
        d.partition,
        d.offset,
        offset,
    )


def _operator() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"[:200]


__all__ = ["Refused", "Replayed", "Where", "find", "listing", "make_id", "replay"]
