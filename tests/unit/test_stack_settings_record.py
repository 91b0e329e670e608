"""What a running supervisor was started with, kept as digests: a change is found by name, never by value."""

from __future__ import annotations

import stat
from pathlib import Path

from services.stack import settings_record


def test_a_changed_set_or_unset_setting_is_named(tmp_path: Path) -> None:
    started = {
        "AUTH": "keys",
        "DATABASE_URL": "postgresql://oee:pw-9f3a@db/oee",
        "VENUE_SEED": "7",
        "PATH": "/x",
    }
    settings_record.record(tmp_path, started)
    assert settings_record.changed(tmp_path, started) == []
    assert settings_record.changed(tmp_path, dict(started, PATH="/y")) == [], (
        "only the engine's variables count"
    )
    assert settings_record.changed(tmp_path, dict(started, OEE_API_KEY="k")) == [], "the tools' own key"
    now = {k: v for k, v in started.items() if k != "VENUE_SEED"}
    now.update(AUTH="off", DATABASE_URL="postgresql://oee:other@db/oee", LOG_LEVEL="debug")
    assert settings_record.changed(tmp_path, now) == ["AUTH", "DATABASE_URL", "LOG_LEVEL", "VENUE_SEED"]
    assert settings_record.changed(tmp_path, dict(started, LOG_LEVEL="")) == [], "empty reads as unset"


def test_the_record_holds_no_value_and_only_its_owner_reads_it(tmp_path: Path) -> None:
    settings_record.record(tmp_path, {"DATABASE_URL": "postgresql://oee:pw-9f3a@db/oee", "AUTH": "keys"})
    path = settings_record.path(tmp_path)
    text = path.read_text()
    assert "pw-9f3a" not in text and "keys" not in text and "DATABASE_URL" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_no_record_means_nothing_to_compare(tmp_path: Path) -> None:
    assert settings_record.changed(tmp_path, {"AUTH": "keys"}) == []
