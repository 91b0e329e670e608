"""The largest numbers an order request may carry: one table, read by the ingress (400 naming the field and
its bound), the API schema (`maximum`) and the router (an order on the log beyond them fails, see
`order_problem`).

Why these values: a DEX order of more than a trillion tokens, a price above a trillion quote tokens per base
token, or a pool that must hold more than a trillion quote tokens is no order anyone means (the largest
stablecoin's whole supply is below 1e12), and keeping every input at 1e12 or less keeps the router's and
the venues' arithmetic (amount * price, reserves * amount) within 1e24, far from a float's overflow (1.8e308)
that made a single request crash the router. `slippageBps` is bounded by its own unit (0..10,000 bp) and
`expiresAt` by the resting time (`INGRESS_MAX_RESTING_S`).

The events' schema keeps `PositiveFloat` (finite, > 0): orders written before these bounds existed still
decode, and the router ends them `failed` with `order_problem`'s reason instead of dead-lettering them.
"""

from __future__ import annotations

import math

from events.payloads import OrderRequestedData

MAX_AMOUNT_IN = 1e12
"""`amountIn`, in the token given up."""
MAX_PRICE = 1e12
"""`limitPrice` and `maxPrice`, quote token per base token."""
MAX_MIN_LIQUIDITY = 1e12
"""`minLiquidity`, quote tokens."""

MAXIMA: dict[str, float] = {
    "amountIn": MAX_AMOUNT_IN,
    "limitPrice": MAX_PRICE,
    "maxPrice": MAX_PRICE,
    "minLiquidity": MAX_MIN_LIQUIDITY,
}
"""API field name -> its largest accepted value."""

_FIELDS: dict[str, str] = {
    "amountIn": "amount_in",
    "limitPrice": "limit_price",
    "maxPrice": "max_price",
    "minLiquidity": "min_liquidity",
}


def order_problem(data: OrderRequestedData) -> str:
    """Why an order on the log is beyond the bounds ("" when it is not): the first field above its maximum."""
    for field, maximum in MAXIMA.items():
        value = getattr(data, _FIELDS[field])
        if value is not None and not (math.isfinite(value) and value <= maximum):
            return f"{field} {value:g} is above its bound {maximum:g}"
    return ""
