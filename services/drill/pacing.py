"""How fast the drill releases orders: spread over the fault plan, whatever delays the faults cause. Pure.

The orders must flow through every fault (a fault with no order after it says nothing), so the rate is
re-planned as the drill goes: the orders not yet released over the time the remaining faults should still
take plus a tail, so that some are left for after the last one. When the faults run late (a slow
recovery), the rate drops; when they are all done, the rest goes out at the ceiling.

The rate alone cannot promise orders after every fault: a fault whose recovery takes far longer than planned
(a pause held by the coordinator, a slow restart under load) lets the floor spend what the later faults
needed. So a reserve is held back for each fault not yet injected, released as it is injected: every fault
has orders behind it to show its recovery, on every partition.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pacing:
    floor: float = 0.5  # orders/s never below this while faults remain (recovery needs orders to show)
    ceiling: float = 25.0  # orders/s at most (the drill measures faults, not throughput)
    tail_s: float = 10.0  # orders kept for after the last fault
    reserve_each: int = 0  # orders held back per fault not yet injected (see `reserve_for`)

    @staticmethod
    def reserve_for(orders: int, faults: int, partitions: int) -> int:
        """Orders to hold back per fault: two per partition (one order per partition shows recovery on it;
        two survive an unlucky spread), never more than half of all the orders spread over the faults."""
        if faults <= 0:
            return 0
        return max(1, min(2 * partitions, orders // (2 * faults)))

    def held(self, remaining_orders: int, faults_not_injected: int) -> bool:
        """Whether the next order must wait: what is left is the reserve of faults still to come."""
        return remaining_orders <= self.reserve_each * faults_not_injected

    def rate(self, remaining_orders: int, remaining_fault_s: float, faults_left: int) -> float:
        """Orders per second to release now."""
        if remaining_orders <= 0:
            return 0.0
        if faults_left == 0:
            return self.ceiling  # the orders kept for after the last fault: all of them now
        wanted = remaining_orders / max(remaining_fault_s + self.tail_s, 1.0)
        return min(self.ceiling, max(self.floor, wanted))
