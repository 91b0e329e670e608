"""Which requests the broker serves, per client id and API key, counted on the wire.

    uv run python -m bench.broker_requests --port 29092 --seconds 30 [--label idle]

Runs `tshark` (Debian package `tshark`; needs root for loopback capture) on the broker's port for N seconds,
decodes the Kafka protocol (Wireshark's dissector) and prints requests per second by client id and API
key. Point it at a broker only the system under test uses (a private `oee stack` broker): on a shared broker
the counts mix everyone's clients.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence

API_KEYS = {
    0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit", 9: "OffsetFetch",
    10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat", 13: "LeaveGroup", 14: "SyncGroup",
    15: "DescribeGroups", 16: "ListGroups", 18: "ApiVersions", 19: "CreateTopics", 22: "InitProducerId",
    24: "AddPartitionsToTxn", 25: "AddOffsetsToTxn", 26: "EndTxn", 28: "TxnOffsetCommit",
    32: "DescribeConfigs", 36: "SaslHandshake", 60: "DescribeCluster", 71: "GetTelemetrySubscriptions",
}  # fmt: skip


def count(port: int, seconds: float) -> collections.Counter[tuple[str, str]]:
    tshark = shutil.which("tshark")
    if tshark is None:
        raise SystemExit("tshark not found: apt-get install -y tshark")
    argv = [
        tshark, "-i", "lo", "-q", "-l", "-f", f"tcp dst port {port}", "-d", f"tcp.port=={port},kafka",
        "-a", f"duration:{seconds}", "-T", "fields", "-E", "separator=\t",
        "-e", "kafka.client_id", "-e", "kafka.request_key", "-Y", "kafka.request_key",
    ]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for line in out.stdout.splitlines():
        client, _, keys = line.partition("\t")
        for key in keys.split(","):  # several requests in one segment
            if key.strip():
                counts[(client.split(",")[0] or "?", API_KEYS.get(int(key), f"key {key}"))] += 1
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--label", default="")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    counts = count(args.port, args.seconds)
    rows = sorted(((c, k, n / args.seconds) for (c, k), n in counts.items()), key=lambda r: -r[2])
    if args.json:
        json.dump(
            {"label": args.label, "seconds": args.seconds, "per_s": [list(r) for r in rows]}, sys.stdout
        )
        print()
        return 0
    total = sum(r[2] for r in rows)
    print(f"{args.label} requests/s over {args.seconds:g} s: {total:.1f}")
    for client, key, rate in rows:
        print(f"  {client:32s} {key:20s} {rate:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
