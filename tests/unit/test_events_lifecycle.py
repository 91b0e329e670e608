"""The order state machine: legal paths, every illegal step, duplicates, gaps, and terminal states."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from msgspec.structs import replace

from events.envelope import Event, Status, new_id
from events.errors import EventValidationError
from events.examples import (
    FAILED_ORDER_ID,
    confirmed_stream,
    example_events,
    expired_stream,
    failed_stream,
    limit_stream,
    sniper_stream,
)
from events.lifecycle import (
    CANCELLABLE,
    RESTING,
    STATUSES,
    TERMINAL,
    TRANSITIONS,
    DuplicateEvent,
    IllegalTransition,
    LifecycleError,
    OrderState,
    SequenceGap,
    WrongOrder,
    apply,
    can_transition,
    fold,
    is_terminal,
    next_event,
)
from events.payloads import OrderFailedData
from events.types import (
    EVENT_TYPES,
    STATUS,
    OrderConfirmed,
    OrderFailed,
    OrderRouting,
    status_of,
)

CONFIRMED = confirmed_stream()
LIMIT = limit_stream()
EXAMPLES = example_events()
FAIL = OrderFailedData(reason="venue rejected the swap", stage="execution", attempts=3)
# Where each status is found in the example streams: (stream, how many of its events).
_AT: dict[str, tuple[list[Event], int]] = {
    "pending": (CONFIRMED, 1),
    "routing": (CONFIRMED, 2),
    "building": (CONFIRMED, 3),
    "submitted": (CONFIRMED, 4),
    "confirmed": (CONFIRMED, 5),
    "failed": (failed_stream(), 3),
    "open": (LIMIT, 2),
    "triggered": (LIMIT, 3),
    "expired": (expired_stream(), 3),
    "cancelled": (sniper_stream(), 3),
}


def _state_at(status: Status, event_type: str | None = None) -> OrderState:
    """An order of the examples in `status`: a limit order when it is to be opened, else the market one."""
    stream, n = (LIMIT, 1) if (status, event_type) == ("pending", "OrderOpened") else _AT[status]
    state = fold(stream[:n])
    assert state is not None and state.status == status
    return state


def _as_next(event: Event, state: OrderState) -> Event:
    """`event` re-addressed as the next event of `state`'s order."""
    return replace(event, order_id=state.order_id, seq=state.last_seq + 1)


def test_the_table_moves_each_event_to_its_status() -> None:
    for (before, event_type), status in TRANSITIONS.items():
        assert STATUS.get(event_type, before) == status, "an event without a status of its own keeps it"
    assert TERMINAL == {"confirmed", "failed", "expired", "cancelled"}
    assert RESTING == {"open"} and CANCELLABLE == {"pending", "open", "triggered", "routing", "building"}
    assert set(STATUSES) == set(STATUS.values())
    assert all(not can_transition(terminal, t) for terminal in TERMINAL for t in EVENT_TYPES)


def test_a_limit_order_rests_triggers_and_fills_with_a_refused_cancel_on_the_way() -> None:
    states = []
    for event in LIMIT:
        states.append(apply(states[-1] if states else None, event))
        assert states[-1].status == status_of(event)
    assert [s.status for s in states] == [
        "pending", "open", "triggered", "routing", "building", "submitted", "submitted", "confirmed",
    ]  # fmt: skip
    final = states[-1]
    assert (final.order_type, final.limit_price, final.expires_at) == (
        "limit",
        151.0,
        LIMIT[0].data.expires_at,
    )  # type: ignore[attr-defined]
    assert (final.trigger_price, final.trigger_venue) == (151.1725, "raydium")
    assert final.triggered_at == LIMIT[2].data.market_at  # type: ignore[attr-defined]
    assert final.min_acceptable_price == 151.0, "the swap's bound is the limit price"


def test_a_market_order_cannot_rest() -> None:
    market = _state_at("pending")
    with pytest.raises(IllegalTransition):
        apply(market, _as_next(EXAMPLES["OrderOpened"], market))


@pytest.mark.parametrize("status", sorted(CANCELLABLE))
def test_an_order_not_yet_submitted_can_be_cancelled(status: Status) -> None:
    state = _state_at(status)
    cancelled = apply(state, _as_next(EXAMPLES["OrderCancelled"], state))
    assert cancelled.status == "cancelled" and is_terminal(cancelled.status)


def test_a_resting_order_expires_and_a_sniper_refused_by_its_guard_fails() -> None:
    state = fold(expired_stream())
    assert state is not None and state.status == "expired" and is_terminal(state.status)
    sniper = fold(sniper_stream()[:2])
    assert sniper is not None
    refused = OrderFailedData(reason="thin pool", stage="trigger", attempts=0)
    assert apply(sniper, next_event(sniper, OrderFailed, refused)).failure_stage == "trigger"


def test_happy_path_to_confirmed_carries_every_field() -> None:
    states: list[OrderState] = []
    for event in CONFIRMED:
        states.append(apply(states[-1] if states else None, event))
    assert [s.status for s in states] == ["pending", "routing", "building", "submitted", "confirmed"]
    final = states[-1]
    requested, building, submitted, confirmed = (CONFIRMED[i] for i in (0, 2, 3, 4))
    assert (final.order_id, final.last_seq, final.last_event_id) == (
        requested.order_id,
        5,
        confirmed.event_id,
    )
    assert (final.base_token, final.quote_token, final.side) == ("SOL", "USDC", "sell")
    assert (final.amount_in, final.slippage_bps, final.order_type) == (12.5, 50, "market")
    assert final.idempotency_key == "checkout-42f1"
    assert final.quotes == tuple(building.data.quotes)  # type: ignore[attr-defined]
    assert final.route_reason == building.data.reason  # type: ignore[attr-defined]
    assert final.min_acceptable_price == submitted.data.min_acceptable_price  # type: ignore[attr-defined]
    assert final.client_order_id == submitted.data.client_order_id  # type: ignore[attr-defined]
    assert (final.venue, final.executed_price, final.amount_out) == ("meteora", 149.6421, 1870.5263)
    assert final.tx_hash == confirmed.data.tx_hash  # type: ignore[attr-defined]
    assert (final.failure_reason, final.attempts) == (None, 1)
    assert (final.created_at, final.updated_at) == (requested.occurred_at, confirmed.occurred_at)
    assert is_terminal(final.status)


def test_happy_path_to_failed() -> None:
    final = fold(failed_stream())
    assert final is not None
    assert (final.order_id, final.status, final.last_seq) == (FAILED_ORDER_ID, "failed", 3)
    assert final.failure_reason is not None and "no quote after 3 attempts" in final.failure_reason
    assert (final.failure_stage, final.attempts, final.venue) == ("routing", 3, None)
    assert is_terminal(final.status)


@pytest.mark.parametrize("status", ["pending", "routing", "building", "submitted"])
def test_any_live_order_can_fail(status: Status) -> None:
    state = _state_at(status)
    failed = apply(state, next_event(state, OrderFailed, FAIL))
    assert failed.status == "failed"
    assert (failed.failure_reason, failed.failure_stage, failed.attempts) == (FAIL.reason, "execution", 3)
    assert failed.venue == state.venue, "a failure without a venue keeps the one already chosen"


ALL_PAIRS = [(status, t) for status in (None, *STATUSES) for t in EVENT_TYPES]


@pytest.mark.parametrize(("status", "event_type"), ALL_PAIRS, ids=[f"{s}-{t}" for s, t in ALL_PAIRS])
def test_every_transition_outside_the_table_is_rejected(status: Status | None, event_type: str) -> None:
    event = EXAMPLES[event_type]
    if status is None:
        event = replace(event, seq=1)
        if (None, event_type) in TRANSITIONS:
            assert apply(None, event).status == TRANSITIONS[None, event_type]
        else:
            with pytest.raises(IllegalTransition) as info:
                apply(None, event)
            assert (info.value.status, info.value.event_type) == (None, event_type)
        return
    state = _state_at(status, event_type)
    event = _as_next(event, state)
    if (status, event_type) in TRANSITIONS:
        assert apply(state, event).status == TRANSITIONS[status, event_type]
    else:
        with pytest.raises(IllegalTransition) as info:
            apply(state, event)
        assert (info.value.status, info.value.event_type, info.value.seq) == (status, event_type, event.seq)


def test_routing_twice_is_illegal_retries_are_counted_inside_the_stage() -> None:
    state = _state_at("routing")
    with pytest.raises(IllegalTransition):
        apply(
            state,
            _as_next(replace(EXAMPLES["OrderRouting"], data=replace(EXAMPLES["OrderRouting"].data)), state),
        )


def test_redeliveries_are_duplicates_that_consumers_can_drop() -> None:
    state = fold(CONFIRMED)
    assert state is not None
    for event in CONFIRMED:
        with pytest.raises(DuplicateEvent) as info:
            apply(state, event)
        assert (info.value.seq, info.value.last_seq) == (event.seq, 5)


def test_a_skipped_seq_is_a_gap() -> None:
    state = _state_at("routing")
    with pytest.raises(SequenceGap) as info:
        apply(state, CONFIRMED[3])  # seq 4 while 3 is missing
    assert (info.value.expected, info.value.seq) == (3, 4)


def test_a_stream_must_start_with_the_request_at_seq_1() -> None:
    with pytest.raises(SequenceGap) as gap:
        apply(None, CONFIRMED[1])
    assert gap.value.expected == 1
    with pytest.raises(SequenceGap):
        apply(None, replace(CONFIRMED[0], seq=2))
    with pytest.raises(IllegalTransition):
        apply(None, replace(CONFIRMED[1], seq=1))


def test_another_orders_event_is_rejected_before_anything_else() -> None:
    state = _state_at("pending")
    stranger = replace(CONFIRMED[1], order_id=new_id())
    with pytest.raises(WrongOrder) as info:
        apply(state, stranger)
    assert info.value.expected_order_id == state.order_id


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_terminal_states_accept_nothing(status: Status) -> None:
    state = _state_at(status)
    for event in EXAMPLES.values():
        for seq in (state.last_seq, state.last_seq + 1, state.last_seq + 2):
            with pytest.raises(LifecycleError):
                apply(state, replace(event, order_id=state.order_id, seq=seq))
    assert _state_at(status) == state


def test_next_event_chains_seq_and_causation() -> None:
    state = _state_at("submitted")
    confirmed_data = EXAMPLES["OrderConfirmed"].data
    event = next_event(state, OrderConfirmed, confirmed_data)
    assert (event.order_id, event.seq, event.causation_id) == (state.order_id, 5, state.last_event_id)
    assert apply(state, event).status == "confirmed"
    explicit = next_event(state, OrderConfirmed, confirmed_data, causation_id=CONFIRMED[0].event_id)
    assert explicit.causation_id == CONFIRMED[0].event_id


def test_next_event_refuses_illegal_or_invalid_events() -> None:
    with pytest.raises(IllegalTransition):
        next_event(_state_at("confirmed"), OrderFailed, FAIL)
    with pytest.raises(IllegalTransition):
        next_event(_state_at("routing"), OrderRouting, {"attempt": 2})
    with pytest.raises(EventValidationError, match="attempt"):
        next_event(_state_at("pending"), OrderRouting, {"attempt": 0})


def _streams() -> list[list[Event]]:
    """The confirmed path and a failure at each live stage."""
    streams = [CONFIRMED]
    for stage in range(1, 5):
        prefix = CONFIRMED[:stage]
        state = fold(prefix)
        assert state is not None
        streams.append([*prefix, next_event(state, OrderFailed, FAIL)])
    return streams


def test_random_deliveries_never_break_the_invariants() -> None:
    """Duplicated, reordered, dropped, foreign and made-up events: only the legal next step applies."""
    rng = random.Random(1729)
    # Other orders' later events (a first event decides whose stream it is; consumers key by order id).
    strangers = [replace(e, order_id=new_id()) for e in CONFIRMED[1:]]
    seen: Counter[str] = Counter()
    for _ in range(400):
        stream = rng.choice(_streams())
        delivery = [e for e in stream for _ in range(rng.choice((1, 1, 2, 3)))]
        for _ in range(rng.randint(0, 4)):  # local reorderings
            i = rng.randrange(len(delivery))
            j = min(len(delivery) - 1, i + rng.randint(1, 3))
            delivery[i], delivery[j] = delivery[j], delivery[i]
        if rng.random() < 0.2:
            delivery.pop(rng.randrange(len(delivery)))
        made_up = rng.random() < 0.5
        for _ in range(rng.randint(0, 3)):  # other orders' events; sometimes made-up ones of this order
            noise = rng.choice(strangers)
            if made_up:
                kind = rng.choice(list(EXAMPLES.values()))
                noise = replace(kind, order_id=stream[0].order_id, seq=rng.randint(1, 7), event_id=new_id())
            delivery.insert(rng.randrange(len(delivery) + 1), noise)

        state: OrderState | None = None
        accepted: list[Event] = []
        for event in delivery:
            before = state
            try:
                state = apply(state, event)
            except LifecycleError as exc:
                assert state is before
                seen[type(exc).__name__] += 1
                continue
            assert before is None or not is_terminal(before.status), "a terminal order changed"
            assert state.order_id == stream[0].order_id
            assert state.last_seq == (before.last_seq + 1 if before else 1)
            assert TRANSITIONS[(before.status if before else None), event.type] == state.status
            accepted.append(event)

        seen["terminal"] += state is not None and is_terminal(state.status)
        assert state == fold(accepted)
        if not made_up:
            assert accepted == stream[: len(accepted)], "genuine deliveries apply a prefix of the stream"
    assert set(seen) == {"DuplicateEvent", "SequenceGap", "IllegalTransition", "WrongOrder", "terminal"}, seen
