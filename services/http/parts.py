"""A part of an app: one service's routes, what they need opened, and who may call each of them.

Access is deny-by-default: a path no part names is `ACCOUNT` (a valid key). Parts name only what is looser
(`PUBLIC`: /health, the page shells) or stricter (`OPERATOR`: metrics, lag, gateway stats). A path ending in
`*` names every path that starts with what comes before it (`/app/*`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from starlette.routing import BaseRoute

from services.http.lifespans import Lifespan


class Access(enum.Enum):
    PUBLIC = "public"  # no key needed: nothing behind it reads or writes data
    ACCOUNT = "account"  # any valid key; the request acts as that key's account
    OPERATOR = "operator"  # a key of an operator account


@dataclass(frozen=True)
class Part:
    name: str
    routes: Sequence[BaseRoute]
    lifespan: Lifespan | None = None
    access: Mapping[str, Access] = field(default_factory=dict)
    orders: frozenset[str] = frozenset()  # paths whose POST places an order (the per-account order limits)


@dataclass(frozen=True)
class Policy:
    """Who may call which path, merged from every part of an app."""

    exact: Mapping[str, Access]
    prefixes: tuple[tuple[str, Access], ...]
    orders: frozenset[str]

    @classmethod
    def of(cls, parts: Iterable[Part]) -> Policy:
        exact: dict[str, Access] = {}
        prefixes: list[tuple[str, Access]] = []
        orders: set[str] = set()
        for part in parts:
            for path, access in part.access.items():
                if path.endswith("*"):
                    prefixes.append((path[:-1], access))
                else:
                    exact[path] = access
            orders.update(part.orders)
        prefixes.sort(key=lambda p: -len(p[0]))  # the longest prefix decides
        return cls(exact, tuple(prefixes), frozenset(orders))

    def access(self, path: str) -> Access:
        found = self.exact.get(path)
        if found is not None:
            return found
        for prefix, access in self.prefixes:
            if path.startswith(prefix):
                return access
        return Access.ACCOUNT
