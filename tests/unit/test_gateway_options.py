"""GATEWAY_* variables: documented defaults, validated values."""

from __future__ import annotations

import pytest

from services.envvars import ConfigError
from services.gateway.options import GATEWAY_ENV_VARS, GatewayOptions


def test_defaults_match_the_documented_ones() -> None:
    options = GatewayOptions.from_env({})
    assert options.port == int(GATEWAY_ENV_VARS["GATEWAY_PORT"][0]) == 3200
    assert options.send_queue == 1000
    assert options.not_found_timeout_s == 30.0
    assert options.heartbeat_s == 15.0
    assert options.compression is False
    assert options.max_message_bytes == 65536 and options.send_queue_bytes == 4 * 1024 * 1024
    assert options.max_account_connections == 1000 and options.max_lookups == 100
    assert GatewayOptions.from_env({}) == GatewayOptions(ready_timeout_s=options.ready_timeout_s)


def test_values_are_read_and_checked() -> None:
    options = GatewayOptions.from_env({"GATEWAY_SEND_QUEUE": "50", "GATEWAY_NOT_FOUND_TIMEOUT_MS": "1500"})
    assert options.send_queue == 50 and options.not_found_timeout_s == 1.5
    with pytest.raises(ConfigError, match="GATEWAY_PORT"):
        GatewayOptions.from_env({"GATEWAY_PORT": "0"})
    with pytest.raises(ConfigError, match="GATEWAY_SEND_QUEUE"):
        GatewayOptions.from_env({"GATEWAY_SEND_QUEUE": "lots"})
