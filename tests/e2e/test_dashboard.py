"""The lag dashboard, the JSON and the terminal view on a running system: `oee venue`, `oee router`,
`oee api` (and `oee projector`) as subprocesses on this test's topics, the page in headless Chromium.

Every wait is on a condition with a deadline: the page's own numbers (`wait_for_function`), the JSON, a log
line. Screenshots go to the test's tmp dir (`before.png`, `after.png`, `paused.png`, `drained.png`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import websockets
from playwright.async_api import Page, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout
from prometheus_client.parser import text_string_to_metric_families

from events.topics import Topics
from services.config import Settings
from tests.e2e.harness import Proc, free_port, service, stop_all, wait_http, wait_log

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ORDER = {"baseToken": "SOL", "quoteToken": "USDC", "side": "sell", "amountIn": 1.5, "slippageBps": 100}
PROJECTION = "projection:orders"


@dataclasses.dataclass
class System:
    settings: Settings
    topics: Topics
    api: str
    router_metrics: str
    venue: str
    procs: dict[str, Proc]
    tmp: Path

    async def lag(self, seq: int | None = None) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            url = f"{self.api}/api/lag" + (f"?seq={seq}" if seq is not None else "")
            response = await client.get(url, timeout=5)
            assert response.status_code == 200, response.text
            return response.json()  # type: ignore[no-any-return]

    async def wait_json(
        self, done: Callable[[dict[str, Any]], bool], what: str, timeout: float = 90
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(AssertionError, httpx.HTTPError):
                report = await self.lag()
                if done(report):
                    return report
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.name}\n{p.tail()}" for p in self.procs.values())
                raise AssertionError(f"timed out waiting for {what}\n{logs}")
            await asyncio.sleep(0.2)

    async def terminal(self) -> tuple[int, str]:
        """`oee lag` as a user runs it: (the sample it shows, its output)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli", "lag", "--url", self.api,
            env=self.procs["api"].env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
        text = out.decode()
        match = re.match(r"lag sample #(\d+) ", text)
        assert match, text
        return int(match.group(1)), text


async def wait_page(page: Page, condition: str, what: str, system: System, timeout: float = 120) -> None:
    """Wait until the page's JS `condition` holds; on a timeout say what the page and the JSON showed."""
    try:
        await page.wait_for_function(condition, timeout=timeout * 1000)
    except PlaywrightTimeout:
        shown = await page.inner_text("body")
        report = await system.lag()
        logs = "\n".join(f"--- {p.name}\n{p.tail()}" for p in system.procs.values())
        raise AssertionError(
            f"page never showed {what}\n{shown[:3000]}\n--- json\n{report}\n{logs}"
        ) from None


def group(report: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((g for g in report["groups"] if g["group"] == name), None)


def terminal_group(text: str, name: str) -> tuple[int, float, str]:
    """(lag, time lag, status) from the group's row of the terminal table."""
    for line in text.splitlines():
        cells = line.split()
        if cells and cells[0] == name and len(cells) == 4:
            return int(cells[1]), float(cells[2].rstrip("s")), cells[3]
    raise AssertionError(f"no row for {name} in:\n{text}")


@contextlib.asynccontextmanager
async def browser_page() -> AsyncIterator[Page]:
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is needed: apt-get install -y chromium"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1100})
            yield page
        finally:
            await browser.close()


async def page_numbers(page: Page, group_name: str | None = None) -> dict[str, Any]:
    """What the page shows, read in one go (so every number belongs to the same rendered sample)."""
    return await page.evaluate(  # type: ignore[no-any-return]
        """(name) => {
            const metric = (m) => Number(document.querySelector(`[data-metric="${m}"]`)?.dataset.value ?? NaN);
            const row = name ? document.querySelector(`tr.group[data-group="${name}"]`) : null;
            return {
                seq: Number(document.getElementById("seq").dataset.value || 0),
                requested: metric("seen.pending"), confirmed: metric("seen.confirmed"), failed: metric("seen.failed"),
                in_flight: metric("in_flight.total"), intake_rate: metric("rate.requests"),
                lag: row ? Number(row.dataset.lag) : null, time_lag: row ? Number(row.dataset.timeLag) : null,
                status: row ? row.dataset.status : null,
                partitions: row ? document.querySelectorAll(`tr.partition[data-group="${name}"]`).length : 0,
            };
        }""",
        group_name,
    )


async def post_orders(api: str, n: int, concurrency: int = 20) -> list[str]:
    ids: list[str] = []
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:

        async def one() -> None:
            async with limit:
                response = await client.post("/api/orders/execute", json=ORDER)
                assert response.status_code == 201, response.text
                ids.append(response.json()["orderId"])

        await asyncio.gather(*(one() for _ in range(n)))
    return ids


async def scrape(url: str) -> dict[str, float]:
    """`name{labels}` -> value for every sample, parsed with the Prometheus text parser."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(url, timeout=5)).text
    return {
        s.name + str(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    want = [f"('{k}', '{v}')" for k, v in labels.items()]
    return sum(v for k, v in samples.items() if k.split("[")[0] == name and all(w in k for w in want))


@pytest.fixture
async def start(
    infra: Settings, topics: Topics, tmp_path: Path, unique: str
) -> AsyncIterator[Callable[..., Awaitable[System]]]:
    started: list[Proc] = []
    schema = f"lag_{unique}"
    prefix = topics.events.removesuffix("orders.events")
    settings = dataclasses.replace(infra, topic_prefix=prefix)

    async def _start(projector: bool = False) -> System:
        venue_port, api_port, router_port = free_port(), free_port(), free_port()
        common = {"VENUE_SEED": "7", "VENUE_EXEC_LATENCY_MS": "1500", "PROJECTION_SCHEMA": schema}
        venue = service("venue", settings, tmp_path, {**common, "VENUE_PORT": str(venue_port)}).start()
        started.append(venue)
        venue_url = f"http://127.0.0.1:{venue_port}"
        router_env = {**common, "VENUE_URL": venue_url, "ROUTER_METRICS_PORT": str(router_port)}
        router = service("router", settings, tmp_path, router_env).start()
        started.append(router)
        api_env = {
            **common,
            "PORT": str(api_port),
            "LAG_INTERVAL_MS": "500",
            "LAG_WINDOW_S": "4",
            "LAG_MIN_SAMPLES": "3",
        }
        api = service("api", settings, tmp_path, api_env).start()
        started.append(api)
        procs = {"venue": venue, "router": router, "api": api}
        if projector:
            procs["projector"] = service("projector", settings, tmp_path, common).start()
            started.append(procs["projector"])
        api_url = f"http://127.0.0.1:{api_port}"
        await wait_http(f"{venue_url}/health", venue)
        await wait_http(f"{api_url}/health", api)
        await wait_log(router, "partition assigned", count=3)
        if projector:
            await wait_log(procs["projector"], "partition assigned")
        return System(
            settings, topics, api_url, f"http://127.0.0.1:{router_port}/metrics", venue_url, procs, tmp_path
        )

    yield _start
    for proc in reversed(started):
        with contextlib.suppress(ProcessLookupError):
            if proc.alive():
                os.kill(proc.pid, signal.SIGCONT)  # a paused process cannot handle its SIGTERM
    stop_all(started)
    conn = await asyncpg.connect(infra.database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def test_the_dashboard_shows_numbers_that_move_under_load(
    start: Callable[..., Awaitable[System]],
) -> None:
    system = await start()
    router_group = f"{system.settings.topic_prefix}oee-router"
    async with browser_page() as page:
        await page.goto(f"{system.api}/dashboard?every=300")
        await page.wait_for_function("document.getElementById('seq').dataset.value !== ''", timeout=60_000)
        before = await page_numbers(page, router_group)
        await page.screenshot(path=system.tmp / "before.png", full_page=True)
        assert before["requested"] == 0 and before["confirmed"] == 0

        # Load: 120 orders. The page must show them arrive, wait in flight (the venue settles after 1.5 s)
        # and finish, with the intake's throughput above zero while they arrive.
        load = asyncio.create_task(post_orders(system.api, 120, concurrency=10))
        busy = await page.wait_for_function(
            "() => Number(document.querySelector('[data-metric=\"in_flight.total\"]').dataset.value) > 0"
            " && Number(document.querySelector('[data-metric=\"rate.requests\"]').dataset.value) > 0",
            timeout=90_000,
        )
        assert busy
        during = await page_numbers(page, router_group)
        ids = await load
        assert len(set(ids)) == 120
        await wait_page(
            page,
            "() => Number(document.querySelector('[data-metric=\"seen.confirmed\"]').dataset.value)"
            " + Number(document.querySelector('[data-metric=\"seen.failed\"]').dataset.value) >= 120"
            " && Number(document.querySelector('[data-metric=\"in_flight.total\"]').dataset.value) === 0",
            "all 120 orders finished and none in flight",
            system,
        )
        after = await page_numbers(page, router_group)
        await page.screenshot(path=system.tmp / "after.png", full_page=True)
        assert during["in_flight"] > 0 and during["intake_rate"] > 0
        assert after["requested"] == 120 and after["confirmed"] + after["failed"] == 120
        assert after["confirmed"] > 0 and after["seq"] > before["seq"]
        # The router's consumer group is on the page, one row per intake partition, caught up.
        assert after["partitions"] == 3 and after["lag"] == 0 and after["status"] == "OK"
        report = await system.lag(after["seq"])
        assert report["orders"]["seen"]["confirmed"] == after["confirmed"]
        # No projector in this stack, so no orders table to count resting orders in: the page says so.
        assert report["resting"] is None, report["errors"]
        stage = next(s for s in report["stages"] if s["stage"] == "venue_execution")
        assert stage["count"] > 0 and 1.0 <= stage["p50_s"] <= 10.0
        texts = await page.inner_text("body")
        assert router_group in texts and "ingress → router" in texts
        assert "resting orders (no projection)" in texts
    for name in ("before.png", "after.png"):
        assert (system.tmp / name).stat().st_size > 10_000

    # /metrics on every service, parsed with the Prometheus text parser, agrees with what happened.
    api, router, venue = (
        await scrape(f"{system.api}/metrics"),
        await scrape(system.router_metrics),
        await scrape(f"{system.venue}/metrics"),
    )
    assert total(api, "oee_ingress_orders_accepted_total") == 120
    assert total(api, "oee_ingress_request_seconds_count") == 120
    assert total(api, "oee_consumer_lag_offsets", group=router_group) == 0
    finished = total(router, "oee_router_transitions_total", status="confirmed")
    assert finished + total(router, "oee_router_transitions_total", status="failed") == 120
    assert total(router, "oee_order_end_to_end_seconds_count") == 120
    assert total(router, "oee_router_decisions_total") == 120
    assert total(venue, "oee_venue_settlements_total") == 120
    assert total(venue, "oee_venue_settlements_total", state="confirmed") == finished


async def test_the_lag_view_shows_the_gateways_delivery_lag_while_clients_watch_orders(
    start: Callable[..., Awaitable[System]],
) -> None:
    system = await start()
    first = await system.wait_json(lambda report: True, "a first sample")
    gateway_stage = next(s for s in first["stages"] if s["stage"] == "log_to_gateway")
    assert "pending" in gateway_stage and gateway_stage["count"] == 0  # nobody watched anything yet

    ws_url = system.api.replace("http://", "ws://")

    async def watch(order_id: str) -> list[dict[str, Any]]:
        """Every frame of the order until the gateway closes the stream after its terminal event."""
        got: list[dict[str, Any]] = []
        async with websockets.connect(f"{ws_url}/ws/orders/{order_id}") as ws:
            async with asyncio.timeout(60):
                async for message in ws:
                    got.append(orjson.loads(message))
        return got

    # Each client connects right after its POST: the venue settles 1.5 s later, so at least the terminal
    # frame reaches it live (the earlier ones may come from the gateway's recent window, as history).
    ids = await post_orders(system.api, 10, concurrency=10)
    streams = await asyncio.gather(*(watch(order_id) for order_id in ids))
    assert all(frames and frames[-1]["status"] in ("confirmed", "failed") for frames in streams)

    def delivered(report: dict[str, Any]) -> bool:
        stage = next(s for s in report["stages"] if s["stage"] == "log_to_gateway")
        return "pending" not in stage and stage["count"] >= len(ids)

    report = await system.wait_json(delivered, "log_to_gateway measured from the clients' live frames")
    stage = next(s for s in report["stages"] if s["stage"] == "log_to_gateway")
    assert stage["source"] == "gateway"
    # Live frames leave within moments of their event, on a loaded machine too; never before it.
    assert 0.0 <= stage["p50_s"] <= stage["p95_s"] <= stage["max_s"] <= 5.0
    samples = await scrape(f"{system.api}/metrics")
    assert total(samples, "oee_gateway_delivery_lag_seconds_count") >= len(ids)
    assert total(samples, "oee_gateway_frames_sent_total", kind="live") >= len(ids)


async def test_a_paused_projector_shows_growing_lag_everywhere_with_the_same_numbers_then_drains(
    start: Callable[..., Awaitable[System]],
) -> None:
    system = await start(projector=True)
    projector = system.procs["projector"]
    await post_orders(system.api, 10)

    def caught_up(report: dict[str, Any]) -> bool:
        g = group(report, PROJECTION)
        return (
            g is not None
            and g["lag"] == 0
            and report["orders"] is not None
            and report["orders"]["seen"]["confirmed"] + report["orders"]["seen"]["failed"] == 10
        )

    await system.wait_json(caught_up, "the projection caught up with the first orders")

    async with browser_page() as page:
        await page.goto(f"{system.api}/dashboard?every=300")
        await page.wait_for_function(
            f"document.querySelector('tr.group[data-group=\"{PROJECTION}\"]') !== null", timeout=60_000
        )
        os.kill(projector.pid, signal.SIGSTOP)
        stop_load = asyncio.Event()

        async def load() -> None:
            while not stop_load.is_set():
                await post_orders(system.api, 5, concurrency=5)
                await asyncio.sleep(0.1)  # pacing the load, not synchronising on anything

        loader = asyncio.create_task(load())
        try:
            # The JSON: the projection's lag grows from sample to sample.
            first = await system.wait_json(
                lambda r: (group(r, PROJECTION) or {}).get("lag", 0) > 0, "projector lag"
            )
            lag1 = group(first, PROJECTION)["lag"]
            second = await system.wait_json(
                lambda r: group(r, PROJECTION)["lag"] > lag1 + 20,
                "the projector's lag growing",
            )
            assert second["seq"] > first["seq"]

            # The page: growing too, and showing the very numbers of the JSON sample it renders.
            await page.wait_for_function(
                f"Number(document.querySelector('tr.group[data-group=\"{PROJECTION}\"]').dataset.lag)"
                f" > {group(second, PROJECTION)['lag']}",
                timeout=60_000,
            )
            shown = await page_numbers(page, PROJECTION)
            same = group(await system.lag(shown["seq"]), PROJECTION)
            assert same is not None and (shown["lag"], shown["time_lag"]) == (same["lag"], same["time_lag_s"])
            assert shown["time_lag"] > 0

            # The terminal: the same numbers as the JSON sample it shows, growing between two runs.
            seq_a, text_a = await system.terminal()
            lag_a, time_a, _ = terminal_group(text_a, PROJECTION)
            json_a = group(await system.lag(seq_a), PROJECTION)
            assert json_a is not None and lag_a == json_a["lag"]
            assert time_a == pytest.approx(
                json_a["time_lag_s"], abs=0.01 if json_a["time_lag_s"] < 10 else 0.5
            )
            seq_b, text_b = await _terminal_growth(system, lag_a)
            lag_b = terminal_group(text_b, PROJECTION)[0]
            assert lag_b > lag_a and lag_b == group(await system.lag(seq_b), PROJECTION)["lag"]

            # With the window full of samples without progress, the status says so.
            stuck = await system.wait_json(
                lambda r: group(r, PROJECTION)["status"] in ("STALL", "STOPPED"),
                "STALL or STOPPED",
            )
            await page.screenshot(path=system.tmp / "paused.png", full_page=True)
            reason = group(stuck, PROJECTION)["reason"]
            assert "no progress" in reason or "no members" in reason, reason
        finally:
            stop_load.set()
            await loader
            os.kill(projector.pid, signal.SIGCONT)

        # Resumed: it drains, on the page and in the JSON and the terminal alike.
        # Orders still settling keep appending events: drained means no order in flight and nothing unread.
        drained = await system.wait_json(
            lambda r: (
                r["orders"]["in_flight_total"] == 0
                and group(r, PROJECTION)["lag"] == 0
                and group(r, PROJECTION)["status"] == "OK"
            ),
            "the projection drained",
            timeout=120,
        )
        await page.wait_for_function(
            f"(() => {{ const r = document.querySelector('tr.group[data-group=\"{PROJECTION}\"]');"
            f" return r && Number(r.dataset.lag) === 0 && Number(document.getElementById('seq').dataset.value) >= {drained['seq']}; }})()",
            timeout=60_000,
        )
        await page.screenshot(path=system.tmp / "drained.png", full_page=True)
        _, text = await system.terminal()
        assert terminal_group(text, PROJECTION)[0] == 0


async def _terminal_growth(system: System, than: int, timeout: float = 90) -> tuple[int, str]:
    """Run `oee lag` until the projection's lag it shows exceeds `than`."""
    deadline = time.monotonic() + timeout
    while True:
        seq, text = await system.terminal()
        if terminal_group(text, PROJECTION)[0] > than or time.monotonic() > deadline:
            return seq, text
