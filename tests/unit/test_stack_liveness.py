"""Liveness: when a service that runs but does not answer is hung (consecutive failures past a start grace,
reset by an answer), what is probed where, the probe itself against real sockets, and a supervisor that
SIGKILLs a SIGSTOPped child and starts it again, counting it as hung."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from services.envvars import ConfigError
from services.stack.liveness import LivenessPolicy, LivenessTracker, Probe, probe_for
from services.stack.restarts import RestartPolicy
from services.stack.supervisor import ComponentStatus, ServiceSpec, Supervisor, http_probe
from services.stack.supervisor_options import SupervisorOptions
from tests.e2e.harness import free_port
from tests.waiting import until

POLICY = LivenessPolicy(interval_s=5.0, timeout_s=3.0, failures=4, grace_s=30.0)


def test_a_service_is_hung_after_the_given_failures_in_a_row_past_its_grace() -> None:
    tracker = LivenessTracker(POLICY)
    tracker.started(100.0)
    verdicts = [tracker.no_answer(130.0 + 5 * i, "no answer within 3 s") for i in range(4)]
    assert verdicts == [False, False, False, True]
    assert (tracker.failed, tracker.last_failure) == (4, "no answer within 3 s")


def test_failures_within_the_start_grace_do_not_count() -> None:
    tracker = LivenessTracker(POLICY)
    tracker.started(100.0)
    assert not any(tracker.no_answer(100.0 + t, "refused") for t in range(0, 30, 5)), "still starting"
    assert tracker.failed == 0
    assert [tracker.no_answer(130.0 + 5 * i, "refused") for i in range(4)] == [False, False, False, True]


def test_an_answer_resets_the_count() -> None:
    tracker = LivenessTracker(POLICY)
    tracker.started(0.0)
    for i in range(3):
        assert not tracker.no_answer(40.0 + i, "timeout")
    tracker.answered()
    assert (tracker.failed, tracker.last_failure) == (0, None)
    assert [tracker.no_answer(50.0 + i, "timeout") for i in range(4)] == [False, False, False, True]


def test_a_new_process_starts_with_no_failures_and_a_new_grace() -> None:
    tracker = LivenessTracker(POLICY)
    tracker.started(0.0)
    for i in range(3):
        tracker.no_answer(40.0 + i, "timeout")
    tracker.started(50.0)
    assert tracker.failed == 0
    assert not tracker.no_answer(79.0, "timeout"), "the new process is within its own grace"


def test_the_defaults_take_about_twenty_seconds_of_silence_and_half_a_minute_of_start() -> None:
    options = SupervisorOptions.from_env({})
    assert options.liveness == LivenessPolicy(interval_s=5.0, timeout_s=3.0, failures=4, grace_s=30.0)
    assert options.liveness.enabled and not LivenessPolicy(interval_s=0).enabled


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SUPERVISOR_PROBE_INTERVAL_S", "-1", "SUPERVISOR_PROBE_INTERVAL_S=-1 is outside 0..3600"),
        ("SUPERVISOR_PROBE_TIMEOUT_S", "0", "SUPERVISOR_PROBE_TIMEOUT_S=0 is outside 0.1..600"),
        ("SUPERVISOR_PROBE_FAILURES", "0", "SUPERVISOR_PROBE_FAILURES=0 is outside 1..1000"),
        ("SUPERVISOR_PROBE_GRACE_S", "soon", "SUPERVISOR_PROBE_GRACE_S='soon' is not a number"),
    ],
)
def test_bad_probe_settings_name_the_variable_and_the_reason(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        SupervisorOptions.from_env({name: value})
    assert str(raised.value) == says


def test_a_service_is_probed_on_its_http_port_else_its_metrics_port_else_not_at_all() -> None:
    assert probe_for(8080, "127.0.0.1", 9308) == Probe("127.0.0.1", 8080, "/health")
    assert probe_for(None, "127.0.0.1", 9308) == Probe("127.0.0.1", 9308, "/metrics")
    assert probe_for(None, "127.0.0.1", 0) is None, "a metrics port of 0 is off"
    assert probe_for(None, "127.0.0.1", None) is None
    assert Probe("::1", 9309, "/metrics").url == "http://[::1]:9309/metrics"


@contextlib.asynccontextmanager
async def server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], object],
) -> AsyncIterator[int]:
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.readline()
        result = handle(reader, writer)
        if asyncio.iscoroutine(result):
            await result
        writer.close()

    srv = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        for writer in writers:  # the silent one's connection too: a server's close leaves them open
            writer.close()
        await srv.wait_closed()


async def test_any_http_answer_is_alive_and_silence_or_refusal_is_not() -> None:
    def unavailable(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")

    async def silent(_: asyncio.StreamReader, __: asyncio.StreamWriter) -> None:
        await asyncio.Event().wait()  # accepts, never answers: a stopped process looks like this

    def garbage(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-something\r\n")

    async with server(unavailable) as port:
        assert await http_probe(Probe("127.0.0.1", port, "/health"), 2.0) is None, "not ready is still alive"
    async with server(silent) as port:
        started = time.monotonic()
        assert await http_probe(Probe("127.0.0.1", port, "/health"), 0.3) == "no answer within 0.3 s"
        assert time.monotonic() - started < 2.0, "the timeout bounds the probe"
    async with server(garbage) as port:
        said = await http_probe(Probe("127.0.0.1", port, "/metrics"), 2.0)
        assert said is not None and said.startswith("not an HTTP answer"), said
    refused = await http_probe(Probe("127.0.0.1", free_port(), "/health"), 2.0)
    assert refused is not None and "ConnectionRefusedError" in refused, refused


# A child that serves HTTP as a service does (any path: 200), until it is stopped.
CHILD = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


async def test_the_supervisor_kills_a_stopped_child_as_hung_and_starts_it_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    probe = Probe("127.0.0.1", port, "/health")
    spec = ServiceSpec("svc", (sys.executable, "-c", CHILD, str(port)), {}, port, probe=probe)
    supervisor = Supervisor(
        services=[spec],
        infra=[],
        policy=RestartPolicy(backoff_min_s=0.1, backoff_max_s=0.5),
        state_dir=tmp_path,
        log_max_bytes=1 << 20,
        log_backups=1,
        stop_timeout_s=5,
        liveness=LivenessPolicy(interval_s=0.2, timeout_s=0.5, failures=3, grace_s=0.5),
    )
    status: ComponentStatus = supervisor._status["svc"]
    stop = asyncio.Event()
    running = asyncio.create_task(supervisor.run(stop))
    try:
        await until(lambda: status.state == "running", 20, "running")
        first = status.pid
        assert first is not None
        os.kill(first, signal.SIGSTOP)
        await until(lambda: status.state == "running" and status.pid not in (None, first), 20, "restarted")
        assert (status.hung, status.restarts) == (1, 1)
        assert status.last_exit == "hung (no answer to 3 probes), killed by SIGKILL"
        said = [r.getMessage() for r in caplog.records if "liveness probe" in r.getMessage()]
        assert said and said[0].startswith(
            "svc did not answer its liveness probe 3 times in a row: killing it"
        )
        assert status.probe == probe.url
    finally:
        stop.set()
        await running
