"""The exported contract: JSON Schemas and doc examples are current and agree with the decoder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from events.codec import decode, encode
from events.commands import COMMAND_TYPES, decode_intake, encode_command
from events.examples import example_commands, example_events, example_market
from events.market import MARKET_TYPES, decode_market, encode_market
from events.schema_export import (
    EVENTS_DOC,
    SCHEMA_DIR,
    check_doc,
    check_schemas,
    json_schemas,
    main,
    write_doc,
    write_schemas,
)
from events.types import EVENT_TYPES, STATUS

EXAMPLES = example_events()
COMMANDS = example_commands()
MARKET = example_market()
ALL_TYPES = [*EVENT_TYPES, *COMMAND_TYPES, *MARKET_TYPES]
ALL_EXAMPLES = {
    **{n: encode(e) for n, e in EXAMPLES.items()},
    **{n: encode_command(c) for n, c in COMMANDS.items()},
    **{n: encode_market(m) for n, m in MARKET.items()},
}


def test_schemas_up_to_date() -> None:
    assert check_schemas(SCHEMA_DIR) == [], "run: uv run python -m events.schema_export"


def test_doc_examples_up_to_date() -> None:
    assert check_doc(EVENTS_DOC), "run: uv run python -m events.schema_export"


def test_every_event_type_is_documented_with_its_status() -> None:
    doc = EVENTS_DOC.read_text(encoding="utf-8")
    for name in EVENT_TYPES:
        status = f"`{STATUS[name]}`" if name in STATUS else "status unchanged"
        assert f"### {name} → {status}" in doc
    for name in [*COMMAND_TYPES, *MARKET_TYPES]:
        assert f"### {name}\n" in doc
    for header in ("dlq.source.topic", "dlq.source.partition", "dlq.source.offset", "dlq.error"):
        assert header in doc
    assert "`upcasters`" in doc


def test_every_json_example_in_the_doc_is_a_valid_event() -> None:
    doc = EVENTS_DOC.read_text(encoding="utf-8")
    blocks = [json.dumps(json.loads(b)).encode() for b in re.findall(r"```json\n(.*?)\n```", doc, flags=re.S)]
    n, c = len(EXAMPLES), len(COMMANDS)
    assert [decode(b) for b in blocks[:n]] == list(EXAMPLES.values())
    assert [decode_intake(b) for b in blocks[n : n + c]] == list(COMMANDS.values())
    assert [decode_market(b) for b in blocks[n + c :]] == list(MARKET.values())


@pytest.mark.parametrize("name", ALL_TYPES)
def test_examples_validate_against_their_schema_and_no_other(name: str) -> None:
    schemas = json_schemas()
    instance = json.loads(ALL_EXAMPLES[name])
    for other, schema in schemas.items():
        validator = jsonschema.Draft202012Validator(schema)
        assert validator.is_valid(instance) == (other == name), other


SCHEMA_REJECTS = [
    ("data.amount_in", 0),
    ("data.slippage_bps", 10_001),
    ("data.side", "hold"),
    ("order_id", "7C9E6679-7425-40DE-944B-E07FC1F90AE7"),
    ("seq", 0),
    ("data.unknown", 1),
]


@pytest.mark.parametrize(("path", "value"), SCHEMA_REJECTS)
def test_the_schema_rejects_what_the_decoder_rejects(path: str, value: object) -> None:
    instance = json.loads(encode(EXAMPLES["OrderRequested"]))
    *parents, last = path.split(".")
    target = instance
    for key in parents:
        target = target[key]
    target[last] = value
    assert not jsonschema.Draft202012Validator(json_schemas()["OrderRequested"]).is_valid(instance)


def test_write_and_check_are_deterministic_and_catch_staleness(tmp_path: Path) -> None:
    assert sorted(check_schemas(tmp_path)) == sorted(ALL_TYPES), "an empty directory is all missing"
    paths = write_schemas(tmp_path)
    assert [p.name for p in paths] == [f"{name}.json" for name in ALL_TYPES]
    first = {p.name: p.read_bytes() for p in paths}
    assert check_schemas(tmp_path) == []
    write_schemas(tmp_path)
    assert {p.name: p.read_bytes() for p in paths} == first
    text = first["OrderRouting.json"].decode()
    assert text.endswith("}\n") and text.startswith('{\n  "$comment"')

    (tmp_path / "OrderRouting.json").write_text(
        text.replace('"minimum": 1', '"minimum": 0'), encoding="utf-8"
    )
    (tmp_path / "OrderFailed.json").unlink()
    retired = tmp_path / "OrderAmended.json"
    retired.write_bytes(first["OrderRouting.json"])
    unrelated = tmp_path / "notes.json"
    unrelated.write_text("{}\n", encoding="utf-8")
    assert sorted(check_schemas(tmp_path)) == ["OrderAmended", "OrderFailed", "OrderRouting"]
    write_schemas(tmp_path)
    assert check_schemas(tmp_path) == []
    assert not retired.exists(), "a generated schema of a retired type is removed"
    assert unrelated.exists(), "files we did not generate are left alone"


def test_doc_examples_are_rewritten_between_the_markers(tmp_path: Path) -> None:
    doc = tmp_path / "events.md"
    doc.write_text(EVENTS_DOC.read_text(encoding="utf-8").replace('"seq": 2', '"seq": 9'), encoding="utf-8")
    assert not check_doc(doc)
    assert write_doc(doc)
    assert doc.read_text(encoding="utf-8") == EVENTS_DOC.read_text(encoding="utf-8")
    assert not write_doc(doc)


def test_main_check_exits_1_when_stale_and_0_after_writing(tmp_path: Path) -> None:
    doc = tmp_path / "events.md"
    doc.write_text(EVENTS_DOC.read_text(encoding="utf-8"), encoding="utf-8")
    assert main(["--check", str(tmp_path / "schemas"), "--doc", str(doc)]) == 1
    assert main([str(tmp_path / "schemas"), "--doc", str(doc)]) == 0
    assert main(["--check", str(tmp_path / "schemas"), "--doc", str(doc)]) == 0
