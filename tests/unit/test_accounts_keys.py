"""API keys: their shape, entropy, hashing and constant-time comparison; account names."""

from __future__ import annotations

import hashlib
import re

import pytest

from services.accounts.keys import check_account_name, hash_key, is_key_id, key_id_of, make_key, matches


def test_a_key_has_a_visible_id_and_256_random_bits_stored_only_hashed() -> None:
    key = make_key()
    match = re.fullmatch(r"oee_([0-9a-f]{12})_([A-Za-z0-9_-]{43})", key.key)
    assert match and match.group(1) == key.key_id
    assert len(match.group(2)) * 6 >= 256, "43 base64url characters carry 258 bits (32 random bytes)"
    assert key.key_hash == hashlib.sha256(key.key.encode()).digest() and key.key not in repr(key.key_hash)
    assert len({make_key().key for _ in range(1000)}) == 1000


def test_key_ids_are_read_only_from_well_formed_keys() -> None:
    key = make_key()
    assert key_id_of(key.key) == key.key_id and is_key_id(key.key_id)
    for bad in (
        "",
        "oee_",
        key.key + "x",
        key.key[:-1],
        key.key.replace("oee_", "xyz_"),
        "Bearer " + key.key,
    ):
        assert key_id_of(bad) is None, bad
    assert not is_key_id("ABCDEF012345") and not is_key_id("0123")


def test_matching_compares_hashes() -> None:
    key = make_key()
    assert matches(key.key, key.key_hash)
    assert not matches(key.key[:-1] + ("A" if key.key[-1] != "A" else "B"), key.key_hash)
    assert not matches(key.key, hash_key("something else"))


@pytest.mark.parametrize("name", ["alice", "desk-7", "a", "ops_2", "0x", "a" * 63])
def test_good_account_names(name: str) -> None:
    assert check_account_name(name) == name


@pytest.mark.parametrize("name", ["", "Alice", "-x", "_x", "a b", "a.b", "a" * 64, "ünï"])
def test_bad_account_names_say_the_rule(name: str) -> None:
    with pytest.raises(ValueError, match="must be 1-63 characters"):
        check_account_name(name)
