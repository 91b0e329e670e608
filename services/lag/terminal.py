"""`oee lag`: the lag report in a terminal, from the API's `GET /api/lag` (the same sample as the dashboard).

    oee lag                    the latest sample as tables: groups and partitions, stages, orders, stuck orders
    oee lag --json             the JSON itself
    oee lag --watch [SECONDS]  redraw every SECONDS (default 2) until Ctrl-C
    oee lag --direct           sample the broker and Postgres from this process (no API needed; its status
                               rules need a few samples, so use it with --watch)

Without `--direct`, an API that does not answer, or refuses the key under AUTH=keys (401: no or an invalid key;
403: not an operator's), makes it sample directly, saying which on stderr. That is no way around the API's
auth: sampling directly needs this environment's own access to the broker and the database (their addresses
and credentials), which is more than an operator key grants. Sampling
directly needs the broker and the database to answer at the start (else one line, exit 1: `oee` main).
`render` is pure (JSON in, text out).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TextIO

import httpx
import orjson

from services.config import Settings
from services.failures import Failure

Report = dict[str, Any]


class LagUnavailable(Failure):
    """Neither the API nor the broker and database answered: there is no report to show."""


_CLEAR = "\x1b[H\x1b[2J"

# Sampling directly after the API refused a key is no way around its auth: it reads the broker and the
# database with this environment's own access to them (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL and its
# credentials), which is more than an operator key grants. Saying so keeps the fallback from looking like one.
_DIRECT = (
    "sampling the broker and the database directly instead, with this environment's own access to them "
    "(KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL), not the API's"
)


def render(report: Report, width: int = 120) -> str:
    lines = [
        f"lag sample #{report['seq']} at {report['sampled_at']} (every {report['interval_s']:g} s, window "
        f"{report['window_s']:g} s, scope {report['scope']})",
        *(f"error: {e}" for e in report.get("errors", [])),
        "",
        _table(
            ["GROUP", "TOPIC", "PART", "COMMITTED", "END", "LAG", "TIME LAG", "STATUS"],
            _group_rows(report),
            right={3, 4, 5, 6},
        ),
    ]
    lines += [f"  {g['group']}: {g['status']} ({g['reason']}; members {_n(g['members'])}, {g['state']})"
              for g in report["groups"]]  # fmt: skip
    lines += ["", _stages(report)]
    resting = _resting(report.get("resting"))
    lines += ["", f"resting orders (limit and sniper, waiting for the market, never stuck): {resting}"]
    orders = report.get("orders")
    if orders:
        lines += ["", _orders(orders)]
    return "\n".join(lines).rstrip() + "\n"


def _group_rows(report: Report) -> list[list[str]]:
    rows = []
    for g in report["groups"]:
        rows.append([g["group"], "", "", "", "", str(g["lag"]), _s(g["time_lag_s"]), g["status"]])
        for p in g["partitions"]:
            rows.append(
                ["", p["topic"], str(p["partition"]), _n(p["committed"]), str(p["end"]), str(p["lag"]),
                 _s(p["time_lag_s"]), p["status"]]
            )  # fmt: skip
    return rows or [["(no consumer groups or projections on these topics)", "", "", "", "", "", "", ""]]


def _stages(report: Report) -> str:
    rows = []
    for s in report["stages"]:
        if s.get("pending"):
            rows.append([s["label"], "", "pending", "", "", "", s["pending"]])
            continue
        now = _s(s["current_s"]) if "current_s" in s else ""
        stats = [_s(s[k]) if s["count"] else "" for k in ("p50_s", "p95_s", "max_s")]
        rows.append([s["label"], now, *stats, str(s["count"]), s["source"]])
    return _table(["STAGE", "NOW", "P50", "P95", "MAX", "N", "SOURCE"], rows, right={1, 2, 3, 4, 5})


def _orders(o: Report) -> str:
    statuses = ["pending", "routing", "building", "submitted", "confirmed", "failed", "expired", "cancelled"]
    rows = []
    for s in statuses:
        d = o["dwell"].get(s, {})
        rows.append(
            [s, _n(o["in_flight"].get(s, "")), str(o["seen"].get(s, 0)), _s(o["oldest_s"].get(s)),
             _s(d.get("p50_s")) if d.get("count") else "", _s(d.get("p95_s")) if d.get("count") else "",
             _n(o["stuck"]["by_status"].get(s, ""))]
        )  # fmt: skip
    text = _table(
        ["STATUS", "IN FLIGHT", "SEEN", "OLDEST", "DWELL P50", "DWELL P95", "STUCK"],
        rows,
        right={1, 2, 3, 4, 5, 6},
    )
    rates = ", ".join(f"{k} {v:g}/s" for k, v in o["rate_per_s"].items())
    text += f"\nin flight {o['in_flight_total']}; rates: {rates}; tracked {o['tracked']}, gaps {o['gaps']}"
    stuck = o["stuck"]
    text += f"\n\nstuck orders: {stuck['count']}"
    for order in stuck["orders"]:
        text += f"\n  {order['order_id']}  {order['status']:<9} for {_s(order['age_s']):>8} (threshold {order['threshold_s']:g} s)"
    return text


def _resting(resting: Report | None) -> str:
    """The projection's count, by type; "-" when the API has no projection to count them in."""
    if resting is None:
        return "- (no projection)"
    types = ", ".join(f"{t} {n}" for t, n in resting["by_type"].items())
    return f"{resting['count']}" + (f" ({types}; oldest {_s(resting['oldest_s'])})" if types else "")


def _table(header: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:  # type: ignore[assignment]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        cells = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return "\n".join([fmt(header), *(fmt(r) for r in rows)])


def _n(value: Any) -> str:
    return "" if value is None or value == "" else str(value)


def _s(value: Any) -> str:
    if value is None or value == "":
        return ""
    return f"{value:.2f}s" if value < 10 else f"{value:.0f}s"


# -- sources ------------------------------------------------------------------------------------------------
class ApiRefused(RuntimeError):
    """The API answered but refused this key (AUTH=keys): 401 no or an unknown key, 403 not an operator's."""

    def __init__(self, url: str, status: int) -> None:
        self.status = status
        why = (
            "an operator key is needed, OEE_API_KEY is not one"
            if status == 403
            else "no key or an invalid one in OEE_API_KEY"
        )
        super().__init__(f"the API at {url} refused the key ({status}: {why})")


def no_answer(url: str, exc: BaseException) -> str:
    """What to say when the API did not answer: the innermost cause, by name. httpx wraps a refused connect
    twice ("All connection attempts failed"), and some of its errors carry no message at all."""
    root = exc
    for _ in range(10):  # a bound: a chain could in principle loop through __context__
        cause = root.__cause__ or root.__context__
        if cause is None:
            break
        root = cause
    words = " ".join((str(root) or str(exc)).split()) or "no details"
    return f"the API at {url} did not answer ({type(root).__name__}: {words})"


async def from_api(url: str, client: httpx.AsyncClient) -> Report:
    response = await client.get(f"{url.rstrip('/')}/api/lag", timeout=5.0)
    if response.status_code in (401, 403):
        raise ApiRefused(url, response.status_code)
    if response.status_code != 200:
        raise RuntimeError(f"{url}/api/lag answered {response.status_code}: {response.text[:200]}")
    return response.json()  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def direct(settings: Settings) -> AsyncIterator[Callable[[], Awaitable[Report]]]:
    """Sample from this process: a monitor of its own, keeping its window across `--watch` refreshes."""
    import asyncpg
    from aiokafka.admin import AIOKafkaAdminClient

    from services.lag.config import LagOptions
    from services.lag.monitor import LagMonitor
    from services.lag.web import projection_schema

    # Both must answer now: a report of nothing but errors would look like a system without lag.
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        await admin.start()
    finally:
        await admin.close()
    dsn = settings.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    monitor = LagMonitor(settings, LagOptions.from_env(), pool, projection_schema())
    await monitor.start(background=False)
    try:

        async def take() -> Report:
            return (await monitor.sample()).to_json()

        yield take
    finally:
        await monitor.stop()
        await pool.close()


async def show(
    settings: Settings,
    url: str,
    *,
    as_json: bool = False,
    watch: float | None = None,
    force_direct: bool = False,
    out: TextIO = sys.stdout,
    client: httpx.AsyncClient | None = None,
    times: int | None = None,
) -> int:
    """Print the report once, or every `watch` seconds (`times` of them; forever when None)."""
    async with contextlib.AsyncExitStack() as stack:
        # Under AUTH=keys /api/lag needs an operator key; a refusal makes us sample directly, saying why.
        key = os.environ.get("OEE_API_KEY", "").strip()
        headers = {"Authorization": f"Bearer {key}"} if key else None
        http = (
            client
            if client is not None
            else await stack.enter_async_context(httpx.AsyncClient(headers=headers))
        )
        take: Callable[[], Awaitable[Report]] = lambda: from_api(url, http)  # noqa: E731
        report: Report | None = None
        if force_direct:
            take = await stack.enter_async_context(direct(settings))
        else:
            try:
                report = await take()
            except (httpx.HTTPError, RuntimeError) as exc:
                api = str(exc) if isinstance(exc, ApiRefused) else no_answer(url, exc)
                try:
                    take = await stack.enter_async_context(direct(settings))
                except Exception as direct_failed:
                    from services.failures import one_line

                    raise LagUnavailable(
                        f"{api}, and sampling directly failed: {one_line(direct_failed, settings)}"
                    ) from direct_failed
                print(f"oee lag: {api}; {_DIRECT}", file=sys.stderr)
        shown = 0
        while True:
            report = report or await take()
            text = (
                orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n"
                if as_json
                else render(report)
            )
            if watch is not None and out.isatty():
                text = _CLEAR + text
            out.write(text)
            out.flush()
            shown += 1
            if watch is None or (times is not None and shown >= times):
                return 0
            report = None
            await asyncio.sleep(watch)
