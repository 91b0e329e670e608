"""Consumer lag as a product feature: per group, topic and partition in offsets and seconds, a status per
group (OK, WARN, STALL, STOPPED, ERR), lag per pipeline stage and in order terms (dwell, stuck orders).

- `rules`   the status rules (pure; docs/lag.md)         - `window`  sliding windows, rates, quantiles (pure)
- `orders`  the order view: dwell, stages, stuck (pure)  - `assess`  readings -> per-partition lag (pure)
- `kafka`   groups, offsets, oldest unread record (I/O)  - `postgres` projector positions, still orders (I/O)
- `follow`  follows the event log for the order view     - `monitor` samples all of it every few seconds
- `model`   the report and its JSON                       - `exporter` the report as Prometheus gauges
- `web`     GET /api/lag, GET /dashboard, the lifespan   - `terminal` `oee lag`
"""
