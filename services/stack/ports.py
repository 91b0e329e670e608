"""Ports for stacks that tests and drills start beside others on one machine: free now, and below the
kernel's ephemeral range.

A port inside the ephemeral range can be handed to an outgoing connection at any moment, and a client that
connects to a port nobody listens on yet can be connected to itself (TCP self-connect): a KRaft node once read
its own ApiVersions request back as the answer (correlation id 0x00120004, "apiKey 18, version 4") and exited.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

__all__ = ["ephemeral_range", "free_port", "free_port_block"]

LISTEN_PORTS_FROM = 20_000  # listening ports are picked from here up to the kernel's ephemeral range


def ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands out to outgoing connections (Linux's default when it cannot be read)."""
    try:
        low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def free_port_block(count: int, attempts: int = 500) -> int:
    """A port p such that p .. p+count-1 are all free now (a cluster's nodes, API n, take consecutive ports),
    outside the ephemeral range: below it, else above it, else anywhere unprivileged."""
    low, high = ephemeral_range()
    spans = [(a, b) for a, b in ((LISTEN_PORTS_FROM, low - count), (high + 1, 65536 - count)) if b - a > 100]
    first, last = spans[0] if spans else (1024, 65536 - count)
    for _ in range(attempts):
        base = random.randrange(first, last)
        held = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                held.append(s)  # before bind: a refused one is closed too
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError(f"no block of {count} free ports found in {first}..{last}")


def free_port() -> int:
    return free_port_block(1)
