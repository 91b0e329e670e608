"""`oee drill`: the chaos drill. A three-broker stack of its own under the supervisor, clients posting orders
with Idempotency-Keys, WebSocket subscribers, one fault about every ten seconds, then a checker that reads
the log, the venue journals and PostgreSQL directly and says what was lost, doubled or wrong (docs/drill.md).

Pure parts (`plan`, `pacing`, `fold`, `verdict`, `table`) know no I/O; the rest drive real processes.
"""
