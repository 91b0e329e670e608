"""How fast the drill releases orders: spread over the fault plan, whatever delays the faults cause. Pure.

The orders must flow through every fault (a fault with no order after it says nothing), so the rate is
re-planned as the drill goes: the orders not yet released over the time the remaining faults should still
take plus a tail, so that some are left for after the last one. When the faults run late (a slow
recovery), the rate drops; when they are all done, the rest goes out at the ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pacing:
    floor: float = 0.5  # orders/s never below this while faults remain (recovery needs orders to show)
    ceiling: float = 25.0  # orders/s at most (the drill measures faults, not throughput)
    tail_s: float = 10.0  # orders kept for after the last fault

    def rate(self, remaining_orders: int, remaining_fault_s: float, faults_left: int) -> float:
        """Orders per second to release now."""
        if remaining_orders <= 0:
            return 0.0
        if faults_left == 0:
            return self.ceiling  # the orders kept for after the last fault: all of them now
        wanted = remaining_orders / max(remaining_fault_s + self.tail_s, 1.0)
        return min(self.ceiling, max(self.floor, wanted))
