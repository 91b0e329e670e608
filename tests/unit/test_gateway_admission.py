"""Who may open one more WebSocket: per process and per account, and the account read from the scope."""

from __future__ import annotations

from dataclasses import dataclass

from services.gateway.admission import LOCAL_ACCOUNT, Admission, account_of


@dataclass
class Account:
    id: str
    name: str


def test_the_account_comes_from_the_scope_state() -> None:
    assert account_of({}) == LOCAL_ACCOUNT == "local"  # AUTH=off: one implicit account
    assert account_of({"state": {}}) == "local"
    assert account_of({"state": {"account": None}}) == "local"
    assert account_of({"state": {"account": "alice"}}) == "alice"
    assert account_of({"state": {"account": Account("acc_1", "alice")}}) == "acc_1"


def test_per_account_then_per_process() -> None:
    admission = Admission(max_connections=3, max_per_account=2)
    assert admission.admit("alice") is None and admission.admit("alice") is None
    code, reason = admission.admit("alice") or (0, "")
    assert code == 1008 and "at most 2 connections per account" in reason
    assert admission.admit("bob") is None
    code, reason = admission.admit("carol") or (0, "")
    assert code == 1013 and "capacity" in reason  # the process is full, whoever asks
    admission.release("alice")
    assert admission.admit("carol") is None
    assert admission.open == 3 and admission.accounts() == 3
    for account in ("alice", "bob", "carol"):
        admission.release(account)
    assert admission.open == 0 and admission.accounts() == 0
