"""The supervisor's small parts: its settings, the venue secret it hands out, its metrics, exit texts."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from services import metrics
from services.envvars import ConfigError
from services.metrics.supervisor import SupervisorCollector
from services.stack import venue_secret
from services.stack.procs import StackError
from services.stack.restarts import RestartPolicy
from services.stack.supervisor import describe_exit, is_error_line
from services.stack.supervisor_options import SupervisorOptions


def test_defaults_restart_from_half_a_second_up_to_thirty_and_call_five_in_two_minutes_a_loop() -> None:
    options = SupervisorOptions.from_env({})
    policy = options.policy
    assert (policy.backoff_min_s, policy.backoff_max_s, policy.healthy_s) == (0.5, 30.0, 60.0)
    assert (policy.loop_restarts, policy.loop_window_s) == (5, 120.0)
    assert (options.metrics_port, options.stop_timeout_s) == (9310, 20.0)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SUPERVISOR_BACKOFF_MS", "500", "SUPERVISOR_BACKOFF_MS='500' must be two integers: first,longest"),
        ("SUPERVISOR_BACKOFF_MS", "5000,100", "SUPERVISOR_BACKOFF_MS='5000,100' needs 1 <= first <= longest <= 3600000"),
        ("SUPERVISOR_BACKOFF_MS", "0,100", "SUPERVISOR_BACKOFF_MS='0,100' needs 1 <= first <= longest <= 3600000"),
        ("SUPERVISOR_CRASH_LOOP", "5", "SUPERVISOR_CRASH_LOOP='5' must be N/S, e.g. 5/120"),
        ("SUPERVISOR_CRASH_LOOP", "0/120", "SUPERVISOR_CRASH_LOOP='0/120' needs N in 1..1000 and S in 1..86400"),
        ("SUPERVISOR_CRASH_LOOP", "5/0", "SUPERVISOR_CRASH_LOOP='5/0' needs N in 1..1000 and S in 1..86400"),
        ("SUPERVISOR_METRICS_PORT", "70000", "SUPERVISOR_METRICS_PORT=70000 is outside 0..65535"),
        ("SUPERVISOR_STOP_TIMEOUT_S", "0", "SUPERVISOR_STOP_TIMEOUT_S=0 is outside 1..600"),
        ("SUPERVISOR_HEALTHY_S", "soon", "SUPERVISOR_HEALTHY_S='soon' is not a number"),
    ],
)  # fmt: skip
def test_bad_supervisor_settings_name_the_variable_and_the_reason(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        SupervisorOptions.from_env({name: value})
    assert str(raised.value) == says


def test_supervisor_settings_make_the_restart_policy() -> None:
    options = SupervisorOptions.from_env(
        {"SUPERVISOR_BACKOFF_MS": "100,2000", "SUPERVISOR_CRASH_LOOP": "3/7.5", "SUPERVISOR_HEALTHY_S": "9"}
    )
    assert options.policy == RestartPolicy(
        backoff_min_s=0.1, backoff_max_s=2.0, healthy_s=9.0, loop_restarts=3, loop_window_s=7.5
    )


def test_the_venue_secret_is_made_once_private_and_long(tmp_path: Path) -> None:
    secret = venue_secret.ensure(tmp_path)
    assert len(bytes.fromhex(secret)) * 8 >= 128
    path = venue_secret.path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert venue_secret.ensure(tmp_path) == secret, "every later `up` hands out the same one"
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "no scratch file left behind"
    os.chmod(path, 0o644)
    assert venue_secret.ensure(tmp_path) == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "a loosened file is made private again"
    assert venue_secret.ensure(tmp_path / "other") != secret


def test_a_stored_secret_too_short_is_refused_without_printing_it(tmp_path: Path) -> None:
    venue_secret.path(tmp_path).write_text("abc123\n")
    with pytest.raises(StackError) as caught:
        venue_secret.ensure(tmp_path)
    assert "abc123" not in str(caught.value)


def test_exits_read_as_a_person_would_say_them() -> None:
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(70) == "exit code 70"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(-200) == "killed by signal 200"


@pytest.mark.parametrize(
    ("line", "says_why"),
    [
        (b"2026-12-01 21:22:15,810 ERROR uvicorn.error: [Errno 99] error while attempting to bind", True),
        (b"2026-12-01 21:24:19,685 INFO  uvicorn.error: Application shutdown complete.", False),
        (b"2026-12-01 21:24:19,685 CRITICAL oee.router: router exiting", True),
        (b'{"ts":"x","level":"error","service":"oee.router","msg":"commit failed"}', True),
        (b'{"ts":"x","level":"info","msg":"no error here"}', False),
        (b"Traceback (most recent call last):", True),
        (b"aiokafka.errors.KafkaConnectionError: Unable to bootstrap", True),
        (b"oee venue: VENUE_FAILURE_RATE='2' must be a probability within 0..1", True),
        (b"    raise KafkaConnectionError(f'Unable to bootstrap')", False),
    ],
)
def test_the_line_quoted_for_a_crash_loop_is_an_error_line(line: bytes, says_why: bool) -> None:
    assert is_error_line(line) is says_why


def test_the_collector_exposes_restarts_readiness_and_crash_loops_per_component() -> None:
    snapshot = {
        "components": [
            {"name": "router", "kind": "service", "state": "backoff", "restarts": 7, "recent_restarts": 6,
             "crash_loop": True, "last_exit_at": 1_700_000_000.5},
            {"name": "kafka-2", "kind": "broker", "state": "running", "restarts": 1, "recent_restarts": 1,
             "crash_loop": False, "last_exit_at": None},
        ]
    }  # fmt: skip
    registry = CollectorRegistry()
    registry.register(SupervisorCollector(lambda: snapshot))
    samples = {
        (s.name, s.labels["component"]): s.value
        for family in text_string_to_metric_families(metrics.exposition(registry).decode())
        for s in family.samples
    }
    assert samples[("oee_supervisor_restarts_total", "router")] == 7
    assert samples[("oee_supervisor_crash_looping", "router")] == 1
    assert samples[("oee_supervisor_component_up", "router")] == 0
    assert samples[("oee_supervisor_recent_restarts", "router")] == 6
    assert samples[("oee_supervisor_last_exit_timestamp_seconds", "router")] == 1_700_000_000.5
    assert samples[("oee_supervisor_component_up", "kafka-2")] == 1
    assert ("oee_supervisor_last_exit_timestamp_seconds", "kafka-2") not in samples

    silent = CollectorRegistry()
    silent.register(SupervisorCollector(lambda: None))
    assert "oee_supervisor" not in metrics.exposition(silent).decode(), "no supervisor, no series"
