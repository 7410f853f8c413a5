"""Connection settings: a URL in, a description safe to print out, and errors that never show the password.

A store is given a libpq URL (``postgresql://user:password@host:5432/shop``) or key/value connection string
(``host=... dbname=...``). Whatever goes wrong, the message names the setting (``url``), what was reached
(user, host, port, database: :func:`describe`) and the fix, and never holds the password: libpq's own messages
are passed through :func:`scrub` first, and an exception raised from a psycopg error is not chained to it (its
text could hold the connection string).

What a failed operation means for running it again is told here too (:func:`connection_lost`,
:func:`conflict`): :mod:`._plumbing` retries only what cannot have been applied.
"""

from __future__ import annotations

from typing import Final, TypeAlias

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from ...errors import ConfigError, StoreError

__all__ = [
    "CONFLICTS", "ENDED_UNCOMMITTED", "EXPECTED", "Conn", "conflict", "connection_error", "connection_lost",
    "describe", "ended_uncommitted", "first_line", "parse", "scrub",
]  # fmt: skip

Conn: TypeAlias = psycopg.Connection[TupleRow]
EXPECTED: Final = "postgresql://user:password@host:5432/database (or a libpq key=value string)"
#: SQLSTATEs of a transaction the server rolled back because of another one (serialization_failure,
#: deadlock_detected): nothing of it was applied, and the same transaction run again may well succeed.
CONFLICTS: Final = frozenset({"40001", "40P01"})
#: SQLSTATEs of the error a server sends as it ends a session whose transaction it did not commit:
#: admin_shutdown (57P01: a fast shutdown, pg_terminate_backend), idle_in_transaction_session_timeout (25P03) and
#: idle_session_timeout (57P05). See :func:`ended_uncommitted`.
ENDED_UNCOMMITTED: Final = frozenset({"57P01", "25P03", "57P05"})
#: SQLSTATEs a server sends as it ends the connection: admin_shutdown (a fast or smart shutdown,
#: pg_terminate_backend), crash_shutdown, cannot_connect_now (starting up or shutting down).
_ENDING: Final = frozenset({"57P01", "57P02", "57P03"})


def parse(url: str) -> dict[str, str]:
    """The connection settings in ``url``; :class:`~recoverkit.errors.ConfigError` if it is not one."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"PostgresStore: expected `url` to be {EXPECTED}, got {type(url).__name__} {url!r}"[:200])
    try:
        settings = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        # libpq's message quotes the part it could not read, which may be the password: say only what is wanted.
        raise ConfigError(f"PostgresStore: `url` is not a PostgreSQL connection URL; expected {EXPECTED}") from None
    return {key: str(value) for key, value in settings.items() if value is not None}


def describe(settings: dict[str, str]) -> str:
    """``user@host:port/database``, as far as ``settings`` say (libpq's defaults fill in the rest)."""
    user = settings.get("user", "")
    host = settings.get("host") or settings.get("hostaddr") or "(default host)"
    port = settings.get("port", "")
    database = settings.get("dbname", "")
    return f"{user + '@' if user else ''}{host}{':' + port if port else ''}/{database}"


def scrub(text: str, settings: dict[str, str]) -> str:
    """``text`` with the password in ``settings`` replaced by ``***`` wherever it occurs."""
    password = settings.get("password")
    return text.replace(password, "***") if password else text


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message: PostgreSQL's own (``LINE 1: ...`` and a caret follow it)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def connection_error(exc: psycopg.Error, settings: dict[str, str], schema: str) -> StoreError:
    """The error to raise when connecting, or the first query, failed with ``exc``."""
    reason = scrub(first_line(exc), settings) or type(exc).__name__
    where = describe(settings)
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        fix = (
            f"the user in `url` needs USAGE and CREATE on schema {schema!r} and SELECT, INSERT, UPDATE, DELETE on its "
            "tables (an owner of the schema has them)"
        )
    elif isinstance(exc, psycopg.errors.InvalidCatalogName):
        fix = "the database in `url` does not exist: create it (createdb) or correct `url`"
    elif isinstance(exc, psycopg.errors.InvalidPassword | psycopg.errors.InvalidAuthorizationSpecification):
        fix = "check the user and password in `url` (and pg_hba.conf on the server)"
    else:
        fix = "check that the server runs and that `url` names its host, port, database, user and password"
    return StoreError(f"PostgresStore: cannot use {where} ({reason}); {fix}")


def conflict(exc: BaseException) -> bool:
    """Whether the server rolled back ``exc``'s transaction for a conflict with another (:data:`CONFLICTS`)."""
    return isinstance(exc, psycopg.Error) and exc.sqlstate in CONFLICTS


def connection_lost(exc: BaseException, conn: Conn | None) -> bool:
    """Whether ``exc`` means the connection is gone (the server restarted or ended the session, the network
    broke) rather than that the server refused the statement: ``conn`` is broken, or the error is one of
    connecting (no SQLSTATE, class 08) or of the server ending the session (:data:`_ENDING`)."""
    if conn is not None and conn.broken:
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _ENDING


#: The server's messages (in English) for the sessions it ends before committing: admin_shutdown and the idle
#: timeouts, as ENDED_UNCOMMITTED lists them by SQLSTATE.
_ENDED_WORDS: Final = (
    "terminating connection due to administrator command",
    "terminating connection due to idle-in-transaction timeout",
    "terminating connection due to idle-session timeout",
)


def ended_uncommitted(exc: BaseException) -> bool:
    """Whether the server ended the session with an error saying so before it committed anything of the statement
    or COMMIT under way (:data:`ENDED_UNCOMMITTED`): then running it again cannot apply it twice.

    Why these prove it: PostgreSQL sends admin_shutdown as an error only from its interrupt checks, which a commit
    holds off, and a committed transaction is answered (ReadyForQuery flushed) before the session next checks; the
    idle timeouts fire only while the session waits for the client, before the COMMIT or statement that follows
    was read. A session ended otherwise (an immediate shutdown or a crash, which only warn; a wait for a
    synchronous standby cancelled after the local commit, which sends no error; the network) ends with no error
    from the server, and whether the COMMIT under way was applied stays unknown.
    """
    if not isinstance(exc, psycopg.Error):
        return False
    if exc.sqlstate is not None:
        return exc.sqlstate in ENDED_UNCOMMITTED
    # Older psycopg (before 3.3) raises the FATAL that ends a session while reading input without its SQLSTATE,
    # only libpq's text. The server's own words for these causes say the same; in another language (lc_messages)
    # they do not match, and the outcome stays unknown: never a retry that could apply a write twice.
    text = str(exc)
    return any(words in text for words in _ENDED_WORDS)
