"""`oee order`: trade from a terminal, through the API (the client in `services.client`), no curl needed.

    oee order place sell 1.5 SOL USDC [--slippage 100] [--key IDEMPOTENCY_KEY] [--watch]
    oee order get ORDER_ID [--min-seq N]
    oee order list [--status S] [--side buy|sell] [--venue V] [--limit N] [--cursor C]
    oee order watch ORDER_ID [--from-seq N]     every frame to the terminal one, resuming if the socket drops
    oee order cancel ORDER_ID

The API is `--url` (default http://HOST:PORT); the key is `OEE_API_KEY` (needed under AUTH=keys). Every
command takes `--json` for machine-readable output (one JSON document, or one per line for `watch`). An
error is one line on stderr (`400 invalid order request: ... [side: must be 'buy' or 'sell']`), exit 1.
`place` prints the order id alone on its last line: `ID=$(oee order place sell 1 SOL USDC | tail -1)`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, TextIO

import msgspec

from services.client.client import AsyncClient, Frame
from services.config import Settings
from services.spec.wire import Order

ACTIONS = ("place", "get", "list", "watch", "cancel")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="the API (default http://HOST:PORT)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    sub = parser.add_subparsers(dest="action", required=True)
    place = sub.add_parser("place", help="place an order: market, or limit (--limit-price), or sniper")
    place.add_argument("side", choices=["buy", "sell"])
    place.add_argument("amount", type=float, help="the amount of the token you give up")
    place.add_argument("base", help="base token, e.g. SOL")
    place.add_argument("quote", help="quote token, e.g. USDC")
    place.add_argument(
        "--slippage", type=int, default=None, metavar="BPS", help="slippage bound (default 100)"
    )
    place.add_argument("--limit-price", type=float, metavar="P", help="a limit order: the worst price")
    place.add_argument("--max-price", type=float, metavar="P", help="a sniper order: the highest price")
    place.add_argument("--min-liquidity", type=float, metavar="Q", help="a sniper order: least quote reserve")
    place.add_argument("--expires-at", metavar="RFC3339", help="a limit or sniper order's expiry")
    place.add_argument("--key", help="Idempotency-Key: retrying with it never makes a second order")
    place.add_argument("--watch", action="store_true", help="then follow it to its end")
    get = sub.add_parser("get", help="an order's current state")
    get.add_argument("order_id")
    get.add_argument("--min-seq", type=int, help="wait until the projection reached this seq")
    listing = sub.add_parser("list", help="your orders, newest first")
    listing.add_argument("--status")
    listing.add_argument("--side", choices=["buy", "sell"])
    listing.add_argument("--venue")
    listing.add_argument("--limit", type=int)
    listing.add_argument("--cursor")
    watch = sub.add_parser("watch", help="an order's lifecycle, live, to its terminal frame")
    watch.add_argument("order_id")
    watch.add_argument("--from-seq", type=int, default=0)
    cancel = sub.add_parser("cancel", help="cancel an order")
    cancel.add_argument("order_id")


def run(settings: Settings, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    url = args.url or f"http://{settings.host}:{settings.port}"
    return asyncio.run(_run(url, args, out))


async def _run(url: str, args: argparse.Namespace, out: TextIO) -> int:
    async with AsyncClient(url) as api:
        match args.action:
            case "place":
                accepted = await api.place(
                    args.side,
                    args.amount,
                    args.base,
                    args.quote,
                    slippage_bps=args.slippage,
                    idempotency_key=args.key,
                    limit_price=args.limit_price,
                    max_price=args.max_price,
                    min_liquidity=args.min_liquidity,
                    expires_at=args.expires_at,
                )
                if args.json:
                    _json(accepted, out)
                else:
                    print(
                        f"accepted: {args.side} {args.amount:g} {args.base}/{args.quote}, pending", file=out
                    )
                    print(accepted.order_id, file=out)
                if args.watch:
                    await _watch(api, accepted.order_id, 0, args.json, out)
            case "get":
                order = await api.get(
                    args.order_id, min_seq=args.min_seq, wait_ms=2000 if args.min_seq else None
                )
                _json(order, out) if args.json else print(describe(order), file=out)
            case "list":
                page = await api.list(
                    status=args.status, side=args.side, venue=args.venue, limit=args.limit, cursor=args.cursor
                )
                if args.json:
                    _json(page, out)
                else:
                    for order in page.orders:
                        print(summary(order), file=out)
                    if not page.orders:
                        print("no orders", file=out)
                    if page.next_cursor:
                        print(f"more: --cursor {page.next_cursor}", file=out)
            case "watch":
                await _watch(api, args.order_id, args.from_seq, args.json, out)
            case "cancel":
                answer = await api.cancel(args.order_id)
                if args.json:
                    _json(answer, out)
                else:
                    print(f"{answer.order_id} {answer.status}: cancel {answer.cancel}", file=out)
    return 0


async def _watch(api: AsyncClient, order_id: str, from_seq: int, as_json: bool, out: TextIO) -> None:
    async for frame in api.watch(order_id, from_seq=from_seq):
        if as_json:
            out.write(msgspec.json.encode(frame).decode() + "\n")
        else:
            print(frame_line(frame), file=out)
        out.flush()


def _json(value: Any, out: TextIO) -> None:
    out.write(msgspec.json.format(msgspec.json.encode(value), indent=2).decode() + "\n")


def summary(order: Order) -> str:
    """One line per order for `list`."""
    price = f" @ {order.executed_price:g}" if order.executed_price is not None else ""
    venue = f" on {order.selected_dex}" if order.selected_dex else ""
    return (
        f"{order.order_id}  {order.created_at}  {order.side:<4} {order.amount_in:g} "
        f"{order.base_token}/{order.quote_token}  {order.status}{venue}{price}"
    )


def describe(order: Order) -> str:
    """An order for `get`: the summary and what its lifecycle said."""
    lines = [summary(order)]
    if order.route_reason:
        lines.append(f"  route: {order.route_reason}")
    if order.min_acceptable_price is not None:
        lines.append(f"  min acceptable price: {order.min_acceptable_price:g}")
    if order.tx_hash:
        lines.append(f"  tx {order.tx_hash}, amount out {order.amount_out:g}")
    if order.failure_reason:
        lines.append(f"  failed at {order.failure_stage}: {order.failure_reason}")
    lines.append(f"  last seq {order.last_seq}, updated {order.updated_at}")
    return "\n".join(lines)


def frame_line(frame: Frame) -> str:
    """One line per frame for `watch`: seq, status and what the frame says that matters."""
    d = frame.data
    detail = ""
    match frame.status:
        case "pending":
            o = d.get("order", {})
            detail = f"{o.get('side')} {o.get('amountIn')} {o.get('baseToken')}/{o.get('quoteToken')}"
        case "routing":
            detail = f"attempt {d.get('attempt')}"
        case "building":
            detail = f"{d.get('selectedDex')}: {d.get('reason')}"
        case "submitted":
            detail = f"{d.get('selectedDex')}, min acceptable price {d.get('minAcceptablePrice')}"
        case "confirmed":
            detail = f"{d.get('selectedDex')} at {d.get('executedPrice')}, out {d.get('amountOut')}, tx {d.get('txHash')}"
        case "failed":
            detail = f"{d.get('stage')}: {d.get('error')}"
    return f"#{frame.seq} {frame.occurred_at} {frame.status:<9} {detail}".rstrip()
