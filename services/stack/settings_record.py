"""The settings a running supervisor was started with, so a later `oee up` with other ones can say so.

The supervisor hands its environment to every service it starts and restarts; a second `oee up` finds it
running and changes nothing. Without a record, `AUTH=off ./oee up` on a stack started with `AUTH=keys` would
print a normal start-up and keep `AUTH=keys` silently. The supervisor writes `run/supervisor-settings.json`
when it starts; `up` compares the environment it would have started one with against it.

Values are never stored: a salted SHA-256 digest per variable (DATABASE_URL, VENUE_SECRET... are secrets), and
what is compared and reported is names only.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["changed", "differences", "path", "read", "record", "settings_names"]

# Read by the `oee` tools themselves, never by a supervised service: changing them changes nothing running.
TOOL_ONLY = frozenset({"OEE_API_KEY", "OEE_CACHE_DIR"})


def path(state_dir: Path) -> Path:
    return state_dir / "run" / "supervisor-settings.json"


def settings_names() -> list[str]:
    """Every variable a supervised service reads (all the components' tables, less the tools' own)."""
    from services.variables import all_env_vars  # the tools' gathering of every table: imported only here

    return sorted(set(all_env_vars()) - TOOL_ONLY)


def _digest(salt: str, value: str) -> str:
    return hashlib.sha256(f"{salt}\0{value}".encode()).hexdigest()


def fingerprint(env: Mapping[str, str], names: Iterable[str], salt: str) -> dict[str, str]:
    """name -> digest of its value, for the names set to something (unset and empty read the same: each
    reader falls back to its default on both)."""
    return {name: _digest(salt, env[name]) for name in names if env.get(name)}


def record(state_dir: Path, env: Mapping[str, str]) -> None:
    """Write the record for a supervisor starting with `env` (owner-only: digests of secrets)."""
    salt = secrets.token_hex(16)
    target = path(state_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_suffix(".tmp")
    scratch.unlink(missing_ok=True)
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"salt": salt, "settings": fingerprint(env, settings_names(), salt)}, out, indent=1)
    scratch.replace(target)


def read(state_dir: Path) -> dict[str, object] | None:
    """The record, or None when there is none (a supervisor from before records, or one starting now)."""
    try:
        data = json.loads(path(state_dir).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("settings"), dict) else None


def differences(recorded: Mapping[str, object], env: Mapping[str, str]) -> list[str]:
    """The names whose value in `env` is not the one recorded (set, unset or changed), sorted."""
    salt = str(recorded["salt"])
    then = recorded["settings"]
    assert isinstance(then, dict)
    now = fingerprint(env, settings_names(), salt)
    return sorted(name for name in set(then) | set(now) if then.get(name) != now.get(name))


def changed(state_dir: Path, env: Mapping[str, str]) -> list[str]:
    """The settings `env` would change on the supervisor running for `state_dir` ([] without a record)."""
    recorded = read(state_dir)
    return [] if recorded is None else differences(recorded, env)
