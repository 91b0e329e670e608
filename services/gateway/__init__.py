"""The WebSocket gateway: each order's events over a WebSocket, history first, then live, gap-free.

`/ws/orders/{orderId}` keeps the seed's frames (`orderId`, `status`, `data`, `ts`) and adds `seq`, `type`
and `occurredAt`; `/ws` multiplexes many orders on one connection. The gateway reads the event log itself
(every partition, from the end, one consumer per process) and fans events out in-process; history comes
from the recent window of that tail, PostgreSQL's `order_events`, or a bounded search of the log.
See `docs/gateway.md`.

Pure modules: `frames` (event -> frame), `protocol` (close codes, parameters, client messages),
`sequencer` (the gap-free merge), `recent` (the tail's window), `hub` (fan-out), `partitioning`.
I/O: `tail`, `pghistory`, `logsearch`, `connection`, `feed`, `endpoints`; composition: `gateway`, `app`,
`server`.
"""
