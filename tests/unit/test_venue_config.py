"""`VENUE_*` configuration: documented defaults, ranges in milliseconds, malformed values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.envvars import ConfigError
from services.venue.config import VENUE_ENV_VARS, VenueConfig, build_venues
from services.venue.simulator import SimulatedVenue


def test_defaults() -> None:
    config = VenueConfig.from_env({})
    assert config.quote_latency_s == (0.0, 0.0)
    assert config.execution_latency_s == (2.0, 3.0)
    assert (config.failure_rate, config.execution_failure_rate, config.drop_reply_rate) == (0.0, 0.0, 0.0)
    assert config.ledger_path is None and config.url == "" and config.port == 3100
    assert 0 <= config.seed < 1 << 32
    assert set(VENUE_ENV_VARS) >= {"VENUE_SEED", "VENUE_QUOTE_LATENCY_MS", "VENUE_EXEC_LATENCY_MS"}


def test_values_and_ranges() -> None:
    config = VenueConfig.from_env(
        {
            "VENUE_SEED": "42",
            "VENUE_QUOTE_LATENCY_MS": "5-20",
            "VENUE_EXEC_LATENCY_MS": "0",
            "VENUE_FAILURE_RATE": "0.1",
            "VENUE_EXEC_FAILURE_RATE": "1",
            "VENUE_LEDGER_PATH": "/tmp/venue/ledger.jsonl",
            "VENUE_URL": "http://127.0.0.1:3100/",
        }
    )
    assert config.seed == 42
    assert config.quote_latency_s == (0.005, 0.02) and config.execution_latency_s == (0.0, 0.0)
    assert (config.failure_rate, config.execution_failure_rate) == (0.1, 1.0)
    assert config.ledger_path == Path("/tmp/venue/ledger.jsonl") and config.url == "http://127.0.0.1:3100"


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("VENUE_SEED", "abc", "VENUE_SEED='abc' is not an integer"),
        ("VENUE_SEED", "-1", "VENUE_SEED=-1 is outside 0..18446744073709551615"),
        ("VENUE_QUOTE_LATENCY_MS", "fast", "VENUE_QUOTE_LATENCY_MS='fast' must be milliseconds 'a' or a range 'a-b'"),
        ("VENUE_QUOTE_LATENCY_MS", "30-10", "VENUE_QUOTE_LATENCY_MS='30-10' must be within 0..86400000 with low <= high"),
        ("VENUE_EXEC_LATENCY_MS", "1-2-3", "VENUE_EXEC_LATENCY_MS='1-2-3' must be milliseconds 'a' or a range 'a-b'"),
        ("VENUE_EXEC_LATENCY_MS", "-5", "VENUE_EXEC_LATENCY_MS='-5' must be milliseconds 'a' or a range 'a-b'"),
        ("VENUE_EXEC_LATENCY_MS", "nan", "VENUE_EXEC_LATENCY_MS='nan' must be within 0..86400000 with low <= high"),
        ("VENUE_EXEC_LATENCY_MS", "1-inf", "VENUE_EXEC_LATENCY_MS='1-inf' must be within 0..86400000 with low <= high"),
        ("VENUE_EXEC_LATENCY_MS", "86400001", "VENUE_EXEC_LATENCY_MS='86400001' must be within 0..86400000 with low <= high"),
        ("VENUE_FAILURE_RATE", "1.5", "VENUE_FAILURE_RATE=1.5 is outside 0..1"),
        ("VENUE_EXEC_FAILURE_RATE", "often", "VENUE_EXEC_FAILURE_RATE='often' is not a number"),
        ("VENUE_DROP_REPLY_RATE", "nan", "VENUE_DROP_REPLY_RATE=nan is outside 0..1"),
        ("VENUE_ADVERSE_MOVE_BPS", "10001", "VENUE_ADVERSE_MOVE_BPS=10001 is outside 0..10000"),
        ("VENUE_STATUS_DELAY_MS", "1-2", "VENUE_STATUS_DELAY_MS='1-2' is not a number"),
        ("VENUE_TICK_MS", "-1", "VENUE_TICK_MS=-1 is outside 0..86400000"),
        ("VENUE_PORT", "70000", "VENUE_PORT=70000 is outside 1..65535"),
    ],
)  # fmt: skip
def test_a_malformed_value_names_its_variable_and_the_reason(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        VenueConfig.from_env({name: value})
    assert str(raised.value) == says


def test_values_are_trimmed_and_only_spaces_is_unset() -> None:
    config = VenueConfig.from_env(
        {"VENUE_HOST": "  ", "VENUE_URL": " http://venue:3100/ ", "VENUE_SEED": " 7 "}
    )
    assert (config.host, config.url, config.seed) == ("127.0.0.1", "http://venue:3100", 7)


def test_an_unset_seed_is_drawn_afresh() -> None:
    seeds = {VenueConfig.from_env({}).seed for _ in range(8)} | {VenueConfig().seed for _ in range(8)}
    assert len(seeds) > 1 and all(0 <= seed < 1 << 32 for seed in seeds)


async def test_build_venues_gives_raydium_and_meteora_with_the_knobs(tmp_path: Path) -> None:
    config = VenueConfig.from_env(
        {"VENUE_SEED": "9", "VENUE_EXEC_LATENCY_MS": "0", "VENUE_LEDGER_PATH": str(tmp_path / "ledger.jsonl")}
    )
    venues = build_venues(config, ["SOL", "USDC", "ETH", "USDT"])
    try:
        assert list(venues) == ["raydium", "meteora"]
        assert all(isinstance(v, SimulatedVenue) and v.seed == 9 for v in venues.values())
        assert venues["raydium"].execution_latency_s == (0.0, 0.0)
        quotes = [await v.quote("SOL", "USDC", "sell", 1.0) for v in venues.values()]
        assert quotes[0].fee_bps == 25.0 and quotes[0].price != quotes[1].price
        await venues["meteora"].submit("cfg-1", "SOL", "USDC", "sell", 1.0, 1.0)
    finally:
        for venue in venues.values():
            await venue.aclose()
    assert (tmp_path / "ledger-meteora.jsonl").read_bytes().count(b"\n") >= 1
