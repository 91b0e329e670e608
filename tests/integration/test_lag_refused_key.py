"""`oee lag` under AUTH=keys without an operator key: it says the API refused the key (and why), then
samples the broker and the database itself, saying that this uses its own access to them."""

from __future__ import annotations

import io

import httpx
import pytest

from services.config import Settings
from services.lag.terminal import show

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("status", "why"),
    [
        (401, "no key or an invalid one in OEE_API_KEY"),
        (403, "an operator key is needed, OEE_API_KEY is not one"),
    ],
)
async def test_a_refused_key_is_named_and_the_sample_taken_directly(
    infra: Settings, status: int, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def api(request: httpx.Request) -> httpx.Response:  # the API's answer under AUTH=keys
        return httpx.Response(status, json={"error": "refused"})

    out = io.StringIO()
    async with httpx.AsyncClient(transport=httpx.MockTransport(api)) as client:
        assert await show(infra, "http://api", out=out, client=client) == 0
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"oee lag: the API at http://api refused the key ({status}: {why})"), line
    assert "did not answer" not in line
    assert "directly instead, with this environment's own access to them" in line
    assert out.getvalue().startswith("lag sample #"), "the report, sampled directly"
