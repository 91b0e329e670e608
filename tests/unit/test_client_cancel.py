"""The client's cancel against servers that answer it, refuse it, or do not know it (an older API)."""

from __future__ import annotations

import httpx
import pytest

from services.client import ApiError, AsyncClient, NotSupported

ORDER = "0b6f3e9a-2d1c-4f7e-9a53-8c1d2e4f5a6b"


def _client(status: int, body: dict[str, object]) -> AsyncClient:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.method == "DELETE" and request.url.path == f"/api/orders/{ORDER}"
        return httpx.Response(status, json=body)

    return AsyncClient("http://api", "", transport=httpx.MockTransport(answer))


async def test_a_requested_cancel_is_typed() -> None:
    body = {
        "orderId": ORDER,
        "status": "open",
        "cancel": "requested",
        "requestId": "5d7e9f1a-0b2c-4d3e-8f4a-6b5c7d8e9f0a",
        "position": {"topic": "orders.requests", "partition": 3, "offset": 17},
    }
    async with _client(202, body) as api:
        accepted = await api.cancel(ORDER)
    assert accepted.cancel == "requested" and accepted.status == "open"
    assert accepted.position is not None and accepted.position.offset == 17


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (405, {"error": "method not allowed", "details": []}),
        (501, {"error": "not implemented", "details": []}),
        (404, {"error": "Not Found", "details": []}),  # no such route: the answer does not name the order
    ],
)
async def test_a_server_without_cancels_is_not_supported(status: int, body: dict[str, object]) -> None:
    async with _client(status, body) as api:
        with pytest.raises(NotSupported, match="not supported by this server"):
            await api.cancel(ORDER)


async def test_an_unknown_order_is_a_404_error() -> None:
    async with _client(404, {"error": f"order {ORDER} not found", "details": []}) as api:
        with pytest.raises(ApiError) as error:
            await api.cancel(ORDER)
    assert error.value.status == 404
