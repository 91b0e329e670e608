"""The specs as the API serves them: public under AUTH=keys, generated from the app's own routes, and the
docs page's files from the swagger-ui-py package (no CDN)."""

from __future__ import annotations

import re

import pytest

from services.accounts.options import AccountsOptions
from services.config import Settings
from services.http.app import build_app
from services.metrics import metrics_part
from services.spec import part as specs
from tests.api_harness import served

pytestmark = pytest.mark.integration

KEYS = AccountsOptions(auth="keys", order_rate=0, max_open_orders=0)


async def test_specs_and_docs_are_served_without_a_key(infra: Settings) -> None:
    app = build_app(infra, [specs.part(), metrics_part()], accounts=KEYS)
    async with served(app) as client:
        oas = await client.get("/openapi.json")
        assert oas.status_code == 200 and oas.json()["openapi"] == "3.1.0"
        assert set(oas.json()["paths"]) == {
            "/openapi.json", "/asyncapi.json", "/docs", "/docs/assets/{file}", "/metrics",
        }  # fmt: skip
        aas = await client.get("/asyncapi.json")
        assert aas.status_code == 200 and aas.json()["asyncapi"] == "3.0.0"
        page = await client.get("/docs")
        assert page.status_code == 200 and "SwaggerUIBundle" in page.text
        # Every file the page loads is served here, none from another host.
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert assets and all(not a.startswith(("http:", "https:", "//")) for a in assets)
        for asset in assets:
            got = await client.get("/" + asset)
            assert got.status_code == 200 and len(got.content) > 100, asset
        assert (await client.get("/metrics")).status_code == 401, "the rest still needs a key"
        assert (await client.get("/docs/assets/no-such-file.js")).status_code == 404
