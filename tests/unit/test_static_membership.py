"""The fencing error aiokafka 0.14 does not know is recognised, bare or wrapped as aiokafka wraps it."""

from __future__ import annotations

from aiokafka import errors

from services.static_membership import FencedInstanceIdError, is_fenced


def test_error_82_is_fenced_instance_id_however_aiokafka_hands_it_over() -> None:
    assert errors.for_code(82) is FencedInstanceIdError
    assert is_fenced(FencedInstanceIdError())
    # JoinGroup and SyncGroup raise KafkaError(repr(err)) for an error they do not handle themselves.
    assert is_fenced(errors.KafkaError(repr(errors.for_code(82)())))
    assert not is_fenced(errors.KafkaError(repr(errors.UnknownError())))
    assert not is_fenced(errors.UnknownMemberIdError())
    assert not is_fenced(ValueError("FencedInstanceIdError"))
