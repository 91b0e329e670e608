"""The secret the venue and the router share, made by `oee up` when the operator gave none (VENUE_SECRET).

256 random bits, written once to `<state>/venue.secret` with mode 0600 and read back on every later `up`, so
a restarted venue and router keep agreeing. It is never printed or logged; `down --purge` deletes it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from services.stack.procs import StackError

ENV_VAR = "VENUE_SECRET"
FILE_NAME = "venue.secret"
_BYTES = 32  # 256 bits; the venue wants at least 128
_MIN_CHARS = 32  # 128 bits in hex


def path(state_dir: Path) -> Path:
    return state_dir / FILE_NAME


def ensure(state_dir: Path) -> str:
    """The stored secret, made first if there is none. Made in a private temporary file and linked into
    place, so a concurrent `up` never reads a half-written one: the first link wins, the other reads it."""
    target = path(state_dir)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = target.with_name(f".{FILE_NAME}.{os.getpid()}")
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(_BYTES) + "\n")
            with contextlib.suppress(FileExistsError):
                os.link(scratch, target)
        finally:
            scratch.unlink(missing_ok=True)
    if target.stat().st_mode & 0o077:
        target.chmod(0o600)  # someone loosened it: only its owner may read it
    secret = target.read_text().strip()
    if len(secret) < _MIN_CHARS:
        raise StackError(f"{target} holds fewer than 128 bits; delete it to have `oee up` make a new one")
    return secret
