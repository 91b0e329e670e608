"""The projection's table metadata (projections/tables.py) and who pays for it. Pure.

Column for column it is checked against the migrations in tests/integration/test_projection_tables.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy.dialects import postgresql

from events.lifecycle import TERMINAL
from projections import tables
from projections.store import PROJECTION_TABLES

ROOT = Path(__file__).resolve().parents[2]


def test_the_metadata_holds_the_tables_a_rebuild_swaps() -> None:
    assert sorted(tables.metadata.tables) == sorted(PROJECTION_TABLES)
    assert all(t.schema is None for t in tables.metadata.tables.values()), (
        "no schema in the metadata: each process puts in its own (PROJECTION_SCHEMA, a test's, a rebuild's)"
    )


def test_the_open_orders_index_says_what_the_count_says() -> None:
    (index,) = [i for i in tables.orders.indexes if i.name == "orders_account_open"]
    where = index.dialect_options["postgresql"]["where"]
    assert str(where.compile(dialect=postgresql.dialect())) == tables.OPEN_ORDERS
    assert tables.OPEN_ORDERS == "status NOT IN (" + ", ".join(f"'{s}'" for s in sorted(TERMINAL)) + ")"


def test_the_projector_and_the_rebuild_do_not_import_sqlalchemy() -> None:
    """They write with unnest and COPY from their own column lists; SQLAlchemy's import costs ~0.5 s of
    CPU at every start of a process that does not need it (the rebuild spawns one per worker)."""
    modules = "projections.projector, projections.rebuild_cli, projections.build, projections.replay"
    probe = f"import sys, {modules}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'sqlalchemy'))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
