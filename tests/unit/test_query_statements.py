"""The read API's statements (services/query/statements.py): SQLAlchemy Core compiled for asyncpg. Pure."""

from __future__ import annotations

import itertools
import re
from dataclasses import fields
from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, select

from projections.migrations import MigrationError
from projections.tables import orders
from services.query.params import Cursor, ListQuery
from services.query.statements import SHAPES, OrderPages, Shape, compile_for

T = datetime(2025, 3, 14, 9, tzinfo=UTC)
OID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
# What each filter adds to the WHERE clause, and the values a query gives it.
CONDITIONS = {
    "status": ("orders.status = $", {"status": "failed"}),
    "side": ("orders.side = $", {"side": "buy"}),
    "order_type": ("orders.type = $", {"order_type": "limit"}),
    "venue": ("orders.selected_dex = $", {"venue": "raydium"}),
    "since": ("orders.created_at >= $", {"since": T}),
    "until": ("orders.created_at < $", {"until": T}),
    "cursor": ("(s.orders.created_at, s.orders.id) < ($", {"cursor": Cursor(T, OID)}),
}


def _query(given: tuple[str, ...]) -> ListQuery:
    values: dict[str, object] = {}
    for name in given:
        values.update(CONDITIONS[name][1])
    return ListQuery(limit=7, **values)  # type: ignore[arg-type]


def test_every_combination_of_filters_gives_only_its_conditions_numbered_in_order() -> None:
    names = [f.name for f in fields(Shape)]
    assert sorted(names) == sorted(CONDITIONS) and SHAPES == 2**7
    pages = OrderPages("s")
    for n in range(len(names) + 1):
        for given in itertools.combinations(names, n):
            sql, args = pages.statement(_query(given), "alice")
            flat = " ".join(sql.split())
            for name, (condition, _) in CONDITIONS.items():
                assert (condition in flat) == (name in given), (given, name, flat)
            numbers = [int(m) for m in re.findall(r"\$(\d+)", flat)]
            assert numbers == list(range(1, len(args) + 1)), "each value once, numbered in order"
            assert args[0] == "alice" and args[-1] == 8, "the account first, the page size + 1 last"
            assert flat.startswith("SELECT s.orders.id, s.orders.type,") and " FROM s.orders WHERE " in flat
            assert flat.endswith(f"ORDER BY s.orders.created_at DESC, s.orders.id DESC LIMIT ${len(args)}")
    assert len(pages) == SHAPES, "one compiled statement per combination, no more"
    pages.statement(_query(("status", "cursor")), "bob")
    assert len(pages) == SHAPES, "a second query of a known shape compiles nothing"


def test_the_cursor_and_times_are_passed_as_values_not_text() -> None:
    sql, args = OrderPages("s").statement(_query(("since", "cursor")), "alice")
    assert args == ["alice", T, T, OID, 8]
    assert "$3::TIMESTAMP WITH TIME ZONE, $4::UUID" in sql
    assert OID not in sql and "2025" not in sql


def test_the_schema_is_the_projection_s_and_checked() -> None:
    sql, _ = OrderPages("rebuild_20250314t0900_ab12").statement(ListQuery(), "alice")
    assert " FROM rebuild_20250314t0900_ab12.orders " in " ".join(sql.split())
    with pytest.raises(MigrationError):
        compile_for(select(orders), 'x"; DROP TABLE orders; --')


def test_a_value_baked_into_a_statement_is_refused() -> None:
    """asyncpg gets only the values `Compiled.args` names: a literal SQLAlchemy turned into a parameter
    would be missing from the call, so it is refused when compiled, not when a request runs."""
    with pytest.raises(ValueError, match="carry values"):
        compile_for(select(orders).where(orders.c.status == "failed"), "s")
    compiled = compile_for(select(orders.c.id).where(orders.c.status == bindparam("status")), "s")
    assert compiled.names == ("status",) and compiled.args({"status": "failed", "other": 1}) == ["failed"]
