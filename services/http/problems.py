"""One problem with a request, naming the field it is about: the `details` entries of every error answer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    field: str
    message: str
