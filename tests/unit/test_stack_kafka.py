"""The local broker's pure helpers: what `kafka-storage format` is given."""

from __future__ import annotations

import base64
import uuid

import pytest

from services.stack import kafka


def test_a_cluster_id_is_a_kafka_uuid_that_never_reads_as_an_option(monkeypatch: pytest.MonkeyPatch) -> None:
    # Force the case that broke a CI run: the first draws encode to text starting with '-'.
    dashed = uuid.UUID(bytes=base64.urlsafe_b64decode("-" + "A" * 21 + "=="))
    fresh = uuid.UUID(int=12345)
    draws = iter([dashed, dashed, fresh])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(draws))
    text = kafka.cluster_id()
    assert text == base64.urlsafe_b64encode(fresh.bytes).rstrip(b"=").decode()
    assert len(text) == 22 and not text.startswith("-")


def test_random_cluster_ids_never_start_with_a_dash() -> None:
    ids = {kafka.cluster_id() for _ in range(2_000)}  # ~31 would start with '-' if nothing prevented it
    assert len(ids) == 2_000
    assert not any(i.startswith("-") for i in ids)
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
