"""The order page in a real browser (Debian's headless Chromium driven by Playwright): a person submits an
order on the page `oee api` serves and watches it reach `confirmed`, live over the mounted gateway."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest
import websockets
from playwright.async_api import Page, async_playwright, expect

from events.topics import Topics
from services.accounts import store
from services.config import Settings
from tests.e2e.harness import LogReader, Proc, free_port, service, stop_all, wait_http, wait_log

pytestmark = pytest.mark.e2e

# No browser download works here: the system's Chromium (Debian package `chromium`) is the browser.
CHROMIUM = os.environ.get("OEE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


SEED_ORDER = {"baseToken": "SOL", "quoteToken": "USDC", "side": "sell", "amountIn": 1.5, "slippageBps": 100}


@dataclasses.dataclass
class Api:
    url: str
    procs: list[Proc]


@pytest.fixture
async def api(infra: Settings, topics: Topics, tmp_path: Path) -> AsyncIterator[Api]:
    """venue + router + `oee api` (ingress, gateway and page in one process) on this test's topics."""
    async with system(infra, topics, tmp_path, {}) as running:
        yield running


@contextlib.asynccontextmanager
async def system(
    infra: Settings, topics: Topics, tmp_path: Path, api_env: dict[str, str]
) -> AsyncIterator[Api]:
    settings = dataclasses.replace(infra, topic_prefix=topics.events.removesuffix("orders.events"))
    venue_port, api_port = free_port(), free_port()
    env = {
        "VENUE_PORT": str(venue_port),
        "VENUE_SEED": "5",
        "VENUE_EXEC_LATENCY_MS": "300",
        "ROUTER_METRICS_PORT": "0",  # no fixed port: other tests' routers may be running
    }
    venue = service("venue", settings, tmp_path, env).start()
    router = service(
        "router", settings, tmp_path, dict(env, VENUE_URL=f"http://127.0.0.1:{venue_port}")
    ).start()
    ingress = service("api", settings, tmp_path, {"PORT": str(api_port), **api_env}).start()
    projector = service("projector", settings, tmp_path, {"PROJECTOR_METRICS_PORT": "0"}).start()
    procs = [venue, router, ingress, projector]
    try:
        await wait_http(f"http://127.0.0.1:{venue_port}/health", venue)
        await wait_log(router, "partition assigned", count=3)
        await wait_http(f"http://127.0.0.1:{api_port}/health", ingress)
        await wait_log(ingress, "log tail positioned")
        yield Api(f"http://127.0.0.1:{api_port}", procs)
    finally:
        stop_all(procs)


@pytest.fixture
def chromium() -> str:
    """The browser binary; missing is a failure, never a skip: the project's setup installs it."""
    assert os.path.exists(CHROMIUM), (
        f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install -y chromium) or set OEE_CHROMIUM"
    )
    return CHROMIUM


@pytest.fixture
async def page(chromium: str) -> AsyncIterator[Page]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield await browser.new_page(viewport={"width": 1100, "height": 900})
        finally:
            await browser.close()


async def test_a_person_submits_an_order_and_watches_it_confirm(
    api: Api, page: Page, infra: Settings, topics: Topics, tmp_path: Path
) -> None:
    await page.goto(api.url + "/")
    await expect(page.locator("h1")).to_have_text("Order execution engine")
    await page.select_option("#side", "sell")
    await page.select_option("#baseToken", "SOL")
    await page.select_option("#quoteToken", "USDC")
    await page.fill("#amountIn", "2.5")
    await page.fill("#slippageBps", "150")
    await page.click("#submit")

    card = page.locator("article.order").first
    await expect(card.locator(".order-status")).to_have_text("confirmed", timeout=60_000)
    await expect(card.locator(".stream-state")).to_contain_text("stream complete", timeout=10_000)
    screenshot = await page.screenshot(path=str(tmp_path / "order-confirmed.png"), full_page=True)

    order_id = await card.get_attribute("data-order-id")
    assert order_id
    statuses = await card.locator(".timeline li").evaluate_all("items => items.map(i => i.dataset.status)")
    assert statuses == ["pending", "routing", "building", "submitted", "confirmed"]
    seqs = await card.locator(".timeline li").evaluate_all("items => items.map(i => Number(i.dataset.seq))")
    assert seqs == [1, 2, 3, 4, 5]
    venue = await card.locator(".venue").text_content()
    assert venue in ("raydium", "meteora")
    assert await card.locator(".quotes tbody tr").count() == 2
    assert await card.locator(".quotes tbody tr.chosen").get_attribute("data-dex") == venue
    tx_hash = (await card.locator(".tx-hash").text_content() or "").strip()
    assert (await card.locator(".failure").text_content()) == "-"

    # What the page shows is what the log says.
    async with LogReader(infra.bootstrap_servers, topics.events) as log:
        await log.wait_terminal([order_id], 30)
        confirmed = log.by_order[order_id][-1]
    assert confirmed.type == "OrderConfirmed"
    assert tx_hash == confirmed.data.tx_hash  # type: ignore[attr-defined]
    assert venue == confirmed.data.venue  # type: ignore[attr-defined]
    assert len(screenshot) > 10_000


async def test_a_person_places_a_limit_order_sees_it_resting_and_cancels_it(api: Api, page: Page) -> None:
    await page.goto(api.url + "/")
    await page.select_option("#type", "limit")
    await expect(page.locator("#slippageBps")).to_be_hidden()
    await page.select_option("#side", "sell")
    await page.fill("#amountIn", "1")
    await page.fill("#limitPrice", "1000")  # far above the market: it rests
    await page.click("#submit")
    card = page.locator("article.order").first
    await expect(card.locator(".order-status")).to_have_text("open", timeout=60_000)
    order_id = await card.get_attribute("data-order-id")
    assert order_id
    await expect(card.locator(".limit")).to_have_text("1,000")
    row = page.locator(f"#resting-orders tr[data-order-id='{order_id}']")
    for _ in range(100):  # the resting list reads the projection: it shows the order once projected
        if await row.count():
            break
        await page.click("#refresh-resting")
        await page.wait_for_timeout(100)
    await expect(row).to_have_count(1)
    await row.locator("button.cancel-resting").click()
    await expect(card.locator(".order-status")).to_have_text("cancelled", timeout=30_000)
    statuses = await card.locator(".timeline li").evaluate_all("items => items.map(i => i.dataset.status)")
    assert statuses == ["pending", "open", "cancelled"]
    await expect(card.locator(".cancel")).to_be_hidden()
    for _ in range(100):
        if not await row.count():
            break
        await page.click("#refresh-resting")
        await page.wait_for_timeout(100)
    await expect(row).to_have_count(0)


async def test_the_page_shows_a_rejected_order(api: Api, page: Page) -> None:
    await page.goto(api.url + "/app/")
    await page.select_option("#baseToken", "SOL")
    await page.select_option("#quoteToken", "SOL")
    await page.click("#submit")
    error = page.locator("#form-error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("HTTP 400")
    assert await page.locator("article.order").count() == 0


async def test_a_seed_client_follows_the_wsurl_on_the_api_port(api: Api) -> None:
    """What the seed's clients do: POST, then open the answer's relative `wsUrl` on the API's host and port."""
    async with httpx.AsyncClient(base_url=api.url) as http:
        answer = (await http.post("/api/orders/execute", json=SEED_ORDER, timeout=10)).json()
    assert answer["wsUrl"] == f"/ws/orders/{answer['orderId']}"
    ws_url = api.url.replace("http://", "ws://") + answer["wsUrl"]
    async with websockets.connect(ws_url) as ws:
        frames = [orjson.loads(message) async for message in ws]
        assert ws.close_code == 1000
    assert [f["status"] for f in frames] == ["pending", "routing", "building", "submitted", "confirmed"]
    assert all({"orderId", "status", "data", "ts", "seq"} <= set(f) for f in frames)
    assert frames[0]["data"]["order"]["amountIn"] == SEED_ORDER["amountIn"]
    assert frames[-1]["data"]["txHash"]


@dataclasses.dataclass
class KeyedApi:
    api: Api
    trader: str
    operator: str


@pytest.fixture
async def keyed_api(infra: Settings, topics: Topics, tmp_path: Path, unique: str) -> AsyncIterator[KeyedApi]:
    """The same system with `AUTH=keys`, and a trader's and an operator's key."""
    conn = await asyncpg.connect(infra.database_url)
    try:
        trader = await store.create_account(conn, f"page-{unique}")
        operator = await store.create_account(conn, f"page-ops-{unique}", operator=True)
    finally:
        await conn.close()
    async with system(infra, topics, tmp_path, {"AUTH": "keys", "LAG_INTERVAL_MS": "500"}) as running:
        yield KeyedApi(running, trader.key, operator.key)


async def test_under_keys_a_person_pastes_a_key_and_watches_the_order_confirm(
    keyed_api: KeyedApi, page: Page
) -> None:
    await page.goto(keyed_api.api.url + "/")  # the page itself is a shell: it loads without a key
    await page.click("#submit")
    error = page.locator("#form-error")
    await expect(error).to_contain_text("HTTP 401")
    await expect(error).to_contain_text("paste a valid API key")
    assert await page.locator("article.order").count() == 0

    await page.fill("#api-key", keyed_api.trader)
    await page.click("#submit")
    card = page.locator("article.order").first
    await expect(card.locator(".order-status")).to_have_text("confirmed", timeout=60_000)
    statuses = await card.locator(".timeline li").evaluate_all("items => items.map(i => i.dataset.status)")
    assert statuses == ["pending", "routing", "building", "submitted", "confirmed"]
    # The key stays in this tab (sessionStorage) and never in the page's address.
    assert keyed_api.trader not in page.url
    assert await page.evaluate("sessionStorage.getItem('oee.apiKey')") == keyed_api.trader


async def test_under_keys_the_dashboard_needs_an_operator_key(keyed_api: KeyedApi, page: Page) -> None:
    await page.goto(keyed_api.api.url + "/dashboard")
    await expect(page.locator("#poll-state")).to_contain_text("401", timeout=20_000)
    await page.fill("#api-key", keyed_api.trader)
    await expect(page.locator("#poll-state")).to_contain_text("403", timeout=20_000)
    await page.fill("#api-key", keyed_api.operator)
    await page.wait_for_function(
        "Number(document.getElementById('seq').dataset.value || 0) > 0", timeout=60_000
    )
    await expect(page.locator("#poll-state")).to_have_text("", timeout=20_000)
