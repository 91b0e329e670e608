"""API keys as pure functions: make one, read one, hash one, compare in constant time. No I/O.

A key reads `oee_<key id>_<secret>`: the key id (12 hex characters, 48 random bits) is what logs, the CLI and
the database name it by; the secret is 32 random bytes in base64url (256 bits). Only SHA-256 of the whole key
is stored. A slow password hash (bcrypt, scrypt) would add nothing: it protects low-entropy secrets people
choose from guessing, and a 256-bit random secret cannot be guessed; it would cost ~100 ms of CPU on every
request instead of ~1 µs.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

KEY_PREFIX = "oee"
KEY_ID_HEX = 12
SECRET_BYTES = 32
_KEY = re.compile(rf"{KEY_PREFIX}_([0-9a-f]{{{KEY_ID_HEX}}})_([A-Za-z0-9_-]{{43}})")
_KEY_ID = re.compile(rf"[0-9a-f]{{{KEY_ID_HEX}}}")
ACCOUNT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
"""What an account name may be (the same rule as `events.envelope.AccountId`: it goes into every order)."""


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly made key: `key` is shown once to its owner, only `key_hash` is stored."""

    key_id: str
    key: str
    key_hash: bytes


def make_key() -> NewKey:
    key_id = secrets.token_hex(KEY_ID_HEX // 2)
    key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return NewKey(key_id, key, hash_key(key))


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_id_of(key: str) -> str | None:
    """The key id of a well-formed key, or None (anything else is not a key of ours)."""
    match = _KEY.fullmatch(key)
    return match.group(1) if match else None


def matches(key: str, stored_hash: bytes) -> bool:
    """Does `key` hash to `stored_hash`? In constant time: how much of it matched must not leak."""
    return hmac.compare_digest(hash_key(key), stored_hash)


def is_key_id(value: str) -> bool:
    return _KEY_ID.fullmatch(value) is not None


def check_account_name(name: str) -> str:
    """`name` if it is a valid account name; ValueError saying the rule otherwise."""
    if not ACCOUNT_NAME.fullmatch(name):
        raise ValueError(
            f"account name {name[:70]!r} must be 1-63 characters of a-z, 0-9, '_' and '-', "
            "starting with a letter or digit"
        )
    return name
