"""Static consumer-group membership (KIP-345) for the router and the projector (docs/decisions/0029).

A member with a `group.instance.id` that is SIGKILLed and restarted with the same id takes its partitions
back at once: the coordinator swaps the new member in for the old one without a rebalance, instead of waiting
out the dead member's session. Here: the id's check (`instance_id`), the id the supervisor gives instance
`name` of a stack (`lineup_instance_id`), and the fencing error aiokafka does not know.

aiokafka 0.14 sends the id on JoinGroup and SyncGroup but has no class for the broker's FENCED_INSTANCE_ID
(error 82): a member whose id another live process took gets `UnknownError` from its rejoin, and would take
the id back on its next poll (a fencing ping-pong between two live processes). Registering the class makes
that case recognisable, so a fenced process can exit with one clear line instead.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

from aiokafka import errors as kafka_errors
from aiokafka.errors import BrokerResponseError

from services.envvars import ConfigError
from services.failures import Failure

__all__ = ["FencedInstanceIdError", "InstanceFenced", "instance_id", "is_fenced", "lineup_instance_id"]

# Kafka's rule for group instance ids (`JoinGroupRequest.validateGroupInstanceId`): topic-name characters.
_ID = re.compile(r"[A-Za-z0-9._-]{1,249}")


class FencedInstanceIdError(BrokerResponseError):  # type: ignore[misc]
    """Another live member joined the group with this process's group instance id (Kafka error 82)."""

    errno = 82
    message = "FENCED_INSTANCE_ID"
    description = "another consumer with the same group.instance.id has registered with a different member.id"


# aiokafka maps a response's error code through this table (`errors.for_code`); 82 is missing from it.
kafka_errors.kafka_errors.setdefault(FencedInstanceIdError.errno, FencedInstanceIdError)


def instance_id(var: str) -> Callable[[str], str | None]:
    """The parser of a `*_INSTANCE_ID` variable: empty (dynamic membership) or a valid Kafka instance id."""

    def parse(raw: str) -> str | None:
        raw = raw.strip()
        if not raw:
            return None
        if not _ID.fullmatch(raw):
            raise ConfigError(
                f"{var}={raw[:40]!r} must be 1-249 letters, digits, '.', '_' or '-' (a Kafka group instance id)"
            )
        return raw

    return parse


def lineup_instance_id(name: str, state_dir: Path) -> str:
    """The id of service instance `name` (`router`, `projector-2`) of the stack kept in `state_dir`.

    Stable across the instance's restarts, distinct between instances. The topic prefix is already in the
    group's name; the state directory's digest keeps two stacks that share a cluster and a prefix from taking
    each other's ids (which would fence them in turn, each restarted by its own supervisor, forever)."""
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:10]
    return f"{name}.{digest}"


class InstanceFenced(Failure):
    """This process was fenced out of its group: another live process joined with its instance id."""

    def __init__(self, what: str, group: str, instance: str, var: str) -> None:
        super().__init__(
            f"{what} fenced: another process joined consumer group {group} with instance id {instance!r};"
            f" this one stops (each process needs its own {var}, or none)"
        )


def is_fenced(exc: BaseException) -> bool:
    """Whether a consumer's error is FENCED_INSTANCE_ID (aiokafka wraps a JoinGroup or SyncGroup error in a
    plain KafkaError carrying the original's repr)."""
    if isinstance(exc, FencedInstanceIdError):
        return True
    return isinstance(exc, kafka_errors.KafkaError) and FencedInstanceIdError.__name__ in str(exc)
