"""Ports for a stack of a test's or a drill's own: free, consecutive when asked, and never in the range the
kernel hands to outgoing connections (where a connection can land on itself before the listener is up)."""

from __future__ import annotations

import socket

from services.stack.ports import ephemeral_range, free_port, free_port_block


def test_a_block_is_free_consecutive_and_outside_the_ephemeral_range() -> None:
    low, high = ephemeral_range()
    for _ in range(20):
        base = free_port_block(6)
        assert not low <= base <= high and not low <= base + 5 <= high
        held = [socket.socket() for _ in range(6)]
        try:
            for n, s in enumerate(held):
                s.bind(("127.0.0.1", base + n))  # all of them free now
        finally:
            for s in held:
                s.close()
    assert not low <= free_port() <= high
