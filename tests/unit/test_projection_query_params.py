"""The read API's query-string parsing (services/query/params.py): pure, every problem named."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.query.params import (
    DEFAULT_LIMIT,
    DEFAULT_WAIT_MS,
    LIST_PARAMS,
    MAX_UNKNOWN_NAMED,
    InvalidQuery,
    ListQuery,
    decode_cursor,
    encode_cursor,
    list_query,
    one_order,
    params_of,
)
from services.query.statements import OrderPages

OID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


def _fields(exc: pytest.ExceptionInfo[InvalidQuery]) -> list[str]:
    return [p.field for p in exc.value.problems]


def test_an_order_id_is_normalised_and_the_wait_defaults() -> None:
    oid, wait = one_order(OID.upper(), {})
    assert oid == OID and not wait.wanted and wait.wait_ms == DEFAULT_WAIT_MS


def test_wait_parameters() -> None:
    _, wait = one_order(OID, params_of([("minSeq", "3"), ("minPosition", "2:41"), ("waitMs", "0")]))
    assert (wait.min_seq, wait.min_position, wait.wait_ms) == (3, (2, 41), 0) and wait.wanted


def test_every_bad_wait_parameter_is_named_at_once() -> None:
    with pytest.raises(InvalidQuery) as exc:
        one_order("nope", params_of([("minSeq", "0"), ("minPosition", "x"), ("waitMs", "10001")]))
    assert _fields(exc) == ["orderId", "minSeq", "waitMs", "minPosition"]


def test_list_defaults_and_filters() -> None:
    assert list_query({}) == ListQuery(limit=DEFAULT_LIMIT)
    q = list_query(params_of([("status", "failed"), ("side", "buy"), ("venue", "raydium"), ("limit", "200"),
                              ("from", "2025-03-14T10:00:00+01:00"), ("to", "2025-03-14T10:00:00Z")]))  # fmt: skip
    assert (q.status, q.side, q.venue, q.limit) == ("failed", "buy", "raydium", 200)
    assert q.since == datetime(2025, 3, 14, 9, tzinfo=UTC)
    assert q.until == datetime(2025, 3, 14, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("items", "fields"),
    [
        ([("status", "done")], ["status"]),
        ([("limit", "0")], ["limit"]),
        ([("limit", "201")], ["limit"]),
        ([("limit", "1e3")], ["limit"]),
        ([("from", "2025-03-14")], ["from"]),  # a date has no zone
        ([("to", "soon")], ["to"]),
        ([("from", "2025-03-14T10:00:00Z"), ("to", "2025-03-14T10:00:00Z")], ["to"]),
        ([("side", "buy"), ("side", "sell")], ["side"]),
        ([("venue", "x" * 65)], ["venue"]),
    ],
)
def test_bad_list_parameters(items: list[tuple[str, str]], fields: list[str]) -> None:
    with pytest.raises(InvalidQuery) as exc:
        list_query(params_of(items))
    assert _fields(exc) == fields


def test_the_list_names_every_parameter_it_does_not_take() -> None:
    # The review's request: each of the three used to be ignored, answering an unfiltered page.
    with pytest.raises(InvalidQuery) as exc:
        list_query(params_of([("waitMs", "1000"), ("minSeq", "1"), ("bogus", "1"), ("status", "done")]))
    assert _fields(exc) == ["waitMs", "minSeq", "bogus", "status"]
    reasons = {p.field: p.message for p in exc.value.problems}
    assert "GET /api/orders/{orderId}?minSeq=&waitMs=" in reasons["minSeq"], "says where waiting works"
    assert all(name in reasons["bogus"] for name in LIST_PARAMS), "says what the list takes"
    assert "bogus" in str(exc.value) and "minSeq" in str(exc.value)


def test_every_parameter_the_list_documents_is_taken() -> None:
    cursor = encode_cursor(list_query({}), datetime(2025, 3, 14, tzinfo=UTC), OID)
    given = {"status": "open", "type": "limit", "side": "sell", "venue": "orca", "from": "2025-03-14T00:00:00Z",
             "to": "2025-03-15T00:00:00Z", "limit": "5", "cursor": cursor}  # fmt: skip
    assert set(given) == set(LIST_PARAMS)
    with pytest.raises(InvalidQuery) as exc:  # every name accepted: the only problem is the cursor's filters
        list_query(params_of(list(given.items())))
    assert _fields(exc) == ["cursor"]
    given["cursor"] = encode_cursor(list_query(params_of([(k, v) for k, v in given.items() if k != "cursor"])),
                                    datetime(2025, 3, 14, tzinfo=UTC), OID)  # fmt: skip
    assert list_query(params_of(list(given.items()))).cursor is not None


def test_a_query_of_many_unknown_names_gets_a_bounded_answer() -> None:
    names = [(f"p{i}", "1") for i in range(5000)] + [("x" * 5000, "1")]
    with pytest.raises(InvalidQuery) as exc:
        list_query(params_of(names))
    problems = exc.value.problems
    assert len(problems) == MAX_UNKNOWN_NAMED + 1
    assert problems[-1].field == "query" and f"{len(names) - MAX_UNKNOWN_NAMED} more" in problems[-1].message
    assert len(exc.value.summary) < 3000


def test_a_long_unknown_name_is_shown_cut() -> None:
    with pytest.raises(InvalidQuery) as exc:
        list_query(params_of([("y" * 1000, "1")]))
    assert len(exc.value.problems[0].field) <= 40


def test_a_cursor_round_trips_and_is_bound_to_its_filters() -> None:
    q = list_query(params_of([("status", "confirmed")]))
    at = datetime(2025, 3, 14, 9, 26, 53, 589123, tzinfo=UTC)
    raw = encode_cursor(q, at, OID)
    assert list_query(params_of([("status", "confirmed"), ("cursor", raw), ("limit", "5")])).cursor == (
        decode_cursor(raw, q)
    )
    assert decode_cursor(raw, q).created_at == at, "microseconds survive: no row skipped or repeated"
    with pytest.raises(InvalidQuery, match="other filters"):
        list_query(params_of([("status", "failed"), ("cursor", raw)]))
    for forged in ("", "abc", "W10", "WyJ4IiwieSIsInoiXQ"):
        with pytest.raises(InvalidQuery, match="cursor"):
            decode_cursor(forged, q)


def test_the_list_sql_is_one_account_s_and_uses_only_the_filters_given() -> None:
    sql, args = OrderPages("s").statement(ListQuery(limit=10), "alice")
    sql = " ".join(sql.split())
    assert "WHERE s.orders.account_id = $1::VARCHAR ORDER BY" in sql and args == ["alice", 11]
    q = list_query(params_of([("venue", "meteora"), ("from", "2025-03-14T09:00:00Z")]))
    sql, args = OrderPages("s").statement(q, "bob")
    sql = " ".join(sql.split())
    assert "account_id = $1" in sql and "selected_dex = $2" in sql and "created_at >= $3" in sql
    assert args[0] == "bob" and args[-1] == DEFAULT_LIMIT + 1
    assert sql.endswith("ORDER BY s.orders.created_at DESC, s.orders.id DESC LIMIT $4")


def test_the_type_filter_and_the_new_statuses() -> None:
    from services.query.params import list_query, params_of

    query = list_query(params_of([("type", "limit"), ("status", "open")]))
    assert (query.order_type, query.status) == ("limit", "open")
    for status in ("triggered", "expired", "cancelled"):
        assert list_query(params_of([("status", status)])).status == status
    with pytest.raises(InvalidQuery) as caught:
        list_query(params_of([("type", "stop")]))
    assert [p.field for p in caught.value.problems] == ["type"]
    assert list_query(params_of([])).fingerprint() != query.fingerprint()


def test_the_open_orders_count_repeats_the_partial_index_and_the_terminal_statuses() -> None:
    from pathlib import Path

    from events.lifecycle import TERMINAL
    from services.query.reads import OPEN_ORDERS

    migration = (Path(__file__).resolve().parents[2] / "sql" / "0004_resting_orders.sql").read_text()
    assert OPEN_ORDERS in migration, "the planner uses the partial index only for the very same predicate"
    assert OPEN_ORDERS == "status NOT IN (" + ", ".join(f"'{s}'" for s in sorted(TERMINAL)) + ")"
