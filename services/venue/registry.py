"""One client order id, at most one swap on the whole chain: which venue holds each id.

Raydium and Meteora are two programs on one chain; a client order id works like a Solana durable nonce:
once one swap has landed under it (on either venue), no other swap can. Each venue claims an id in this
registry before journaling its acceptance (no await between the check and the claim, so two venues racing
for one id cannot both win) and releases it if the write fails. The registry itself is not journaled: it is
the union of the venues' ledgers, rebuilt from their journals at start (`build_venues` shares one between
the venues it builds). It grows like the ledgers do, one entry per swap ever accepted (~100 bytes).
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class ClientOrderIds:
    def __init__(self) -> None:
        self._owners: dict[str, str] = {}

    def owner(self, client_order_id: str) -> str | None:
        """The venue holding (or taking) this id, or None if it is free."""
        return self._owners.get(client_order_id)

    def claim(self, client_order_id: str, venue: str) -> str:
        """Take a free id for `venue`; returns the id's owner afterwards (another venue if it was taken)."""
        return self._owners.setdefault(client_order_id, venue)

    def release(self, client_order_id: str, venue: str) -> None:
        """Free an id `venue` claimed but did not accept (its journal write failed, or it refused)."""
        if self._owners.get(client_order_id) == venue:
            del self._owners[client_order_id]

    def restore(self, client_order_id: str, venue: str) -> None:
        """Register an id found in `venue`'s journal at start."""
        owner = self.claim(client_order_id, venue)
        if owner != venue:  # only journals written before the registry existed can disagree
            log.warning("client order id %s has swaps on both %s and %s", client_order_id, owner, venue)

    def __len__(self) -> int:
        return len(self._owners)
