"""Why a command failed, in one line: what `oee` prints instead of a traceback.

A command that cannot reach the broker, the database or the API says which, where (the database URL without
its password) and the library's own words, on one line. Anything else is a bug: one line naming the
exception, and the traceback only under `LOG_LEVEL=debug`. Pure: takes the exception and the settings.
"""

from __future__ import annotations

import traceback
from urllib.parse import urlsplit

from services.config import Settings


class Failure(Exception):
    """A failure whose message is already the one line to print (the CLI prints it as it is)."""


_PLACES = (
    ("aiokafka", "broker"),
    ("kafka", "broker"),
    ("confluent_kafka", "broker"),
    ("asyncpg", "database"),
    ("psycopg", "database"),
    ("httpx", "api"),
    ("httpcore", "api"),
    ("websockets", "api"),
)


def where_database(url: str) -> str:
    """`host:port/db` of a database URL: never its user or password."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(malformed DATABASE_URL)"
    return f"{host}{port}{parts.path}"


def place(exc: BaseException) -> str | None:
    """Which dependency failed (`broker`, `database`, `api`), judged by the library that raised it."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for failure in chain:
        module = type(failure).__module__ or ""
        for prefix, what in _PLACES:
            if module == prefix or module.startswith(prefix + "."):
                return what
        for frame in traceback.extract_tb(failure.__traceback__)[::-1]:
            for prefix, what in _PLACES:
                if f"/{prefix}/" in frame.filename:
                    return what
    return None


def one_line(exc: BaseException, settings: Settings | None, api_url: str | None = None) -> str:
    """The line to print for `exc` (without the `oee <command>: ` prefix)."""
    words = " ".join(str(exc).split()) or type(exc).__name__
    words = words.removeprefix(f"{type(exc).__name__}: ")  # aiokafka repeats its class name
    if len(words) > 300:
        words = words[:297] + "..."
    what = place(exc)
    if what == "broker":
        at = settings.bootstrap_servers if settings else "KAFKA_BOOTSTRAP_SERVERS"
        return f"the broker at {at} did not answer ({type(exc).__name__}: {words})"
    if what == "database":
        at = where_database(settings.database_url) if settings else "DATABASE_URL"
        return f"the database at {at} did not answer ({type(exc).__name__}: {words})"
    if what == "api":
        at = api_url or (f"http://{settings.host}:{settings.port}" if settings else "the API")
        return f"the API at {at} did not answer ({type(exc).__name__}: {words})"
    if isinstance(exc, OSError | TimeoutError | RuntimeError):
        return f"{type(exc).__name__}: {words}"
    return f"unexpected {type(exc).__name__}: {words} (LOG_LEVEL=debug shows the traceback)"
