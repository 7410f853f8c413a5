"""The connection plumbing every part of :class:`~recoverkit.store.postgres.PostgresStore` runs its SQL through.

Two :class:`psycopg_pool.ConnectionPool` per store object: the data lane (``pool_size`` connections) and the
lease lane (one connection, for the leases and membership: taking, renewing and releasing them, reading who
holds them). A renewal must never wait for a connection behind the claims, appends and facts of thousands of
messages falling due at once: waiting longer than the lease would lose it. Connections are in autocommit mode and every
operation is one explicit transaction (``conn.transaction()``): committed when the method returns, rolled back
whole when it raises. Each new connection has its ``search_path`` set to the store's schema, so the SQL names
tables bare.

Synchronous on purpose: today's :class:`~recoverkit.store.Store` protocol is synchronous (the engine calls it
in a worker thread), and a sync pool of a few connections serves the threads of one process. An async path
(``psycopg.AsyncConnection`` with ``psycopg_pool.AsyncConnectionPool``) would let the engine await the store on
its event loop instead of a thread hop per call, and pipeline the journal's appends; it needs an async store
protocol first, and would change only this module and the call sites, not the SQL.

Connections lost (a database restart, a failover, a session the server ended): a pooled connection is checked
as it is taken from the pool, without a round trip when the server has said nothing on it since its last use (a
server that ends a session says so first) and with a ping when it sat idle for a second or the server did say
something; one found broken is discarded and replaced, never handed out. An operation that fails for a lost
connection, or that the server rolled back for a conflict with another (serialization failure, deadlock), is run
again, with capped exponential backoff and full jitter, for up to ``retry_for`` seconds (10 by default; 0: never),
but only when it cannot have been applied:

- a read, always;
- a write whose connection could not be had, or that failed before its COMMIT was sent (the server rolls back a
  transaction whose session ends before COMMIT), or that the server rolled back for a conflict;
- a write whose session the server ended, saying so, while its COMMIT (or, for an operation of one statement,
  the statement itself, which is its own COMMIT) was under way: a fast shutdown or restart, ``pg_terminate_backend``
  or an idle timeout, which PostgreSQL reports only for a transaction it did not commit (see
  :func:`._conninfo.ended_uncommitted`);
- never a write whose connection was lost with no word from the server while its COMMIT was under way (a crash,
  an immediate shutdown, the network): PostgreSQL may or may not have committed it. It raises
  :class:`~recoverkit.errors.StoreError` saying that the outcome is unknown and that it was not retried; the caller
  treats it as it treats a crash at that moment.

Other errors (a constraint, a bad value) are raised at once, as before. :meth:`Plumbing.statistics` counts the
retries, the broken connections replaced, the attempts that failed for a lost or unreachable connection and the
writes whose outcome is unknown. Retrying blocks the calling thread (the engine calls the store from worker
threads) for at most ``retry_for`` seconds, or ``connect_timeout`` when the first wait for a connection is longer.

Fork: a pool's connections and threads must not cross a ``fork()``; a store used in another process than the
one that opened it raises :class:`~recoverkit.errors.StoreError` (open it after forking).
"""

from __future__ import annotations

import os
import random
import select
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Final, Literal, TypeAlias, TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from ..._log import get_logger
from ...errors import ConfigError, StoreError
from .._lifecycle import StoreStatistics
from . import _conninfo, _schema
from ._conninfo import Conn

__all__ = ["Conn", "Plumbing"]

T = TypeVar("T")
#: Which pool an operation takes its connection from (see the module).
Lane: TypeAlias = Literal["data", "lease"]
#: Seconds a pooled connection may sit idle before it is pinged when taken again (see Plumbing._check).
IDLE_CHECK: Final = 1.0
#: Milliseconds a session may sit idle inside a transaction before the server ends it (see ``_configure``): far
#: above any gap between the statements of one of the store's transactions (milliseconds), and how long at most a
#: take-over waits for the locks of an owner frozen mid-transaction.
IDLE_IN_TRANSACTION_MS: Final = 2000
#: Seconds a new connection may take to open, unless the URL says (``connect_timeout``).
CONNECT_TIMEOUT: Final = 10.0
#: Seconds an operation may go on retrying after a lost connection or a conflict (``retry_for``): a server
#: restart or a failover usually takes a few seconds, and a caller waiting longer would rather hear of it.
RETRY_FOR: Final = 10.0
#: The first pause before a retry, and the longest: each try doubles it (full jitter: a random pause up to it,
#: so that the threads and hosts that lost their connections together do not all come back together).
BACKOFF_FIRST: Final = 0.05
BACKOFF_CAP: Final = 1.0

_log = get_logger("recoverkit.store")


class _Try:
    """How far one try of an operation got: ``connect`` (taking a connection), ``run`` (BEGIN and the
    statements), ``commit`` (COMMIT sent, or the one statement that commits itself); and its connection."""

    __slots__ = ("conn", "phase")

    def __init__(self) -> None:
        self.phase = "connect"
        self.conn: Conn | None = None


def _has_input(conn: Conn) -> bool:
    """Whether the server sent something on idle ``conn`` (we LISTEN to nothing): a session it ended says so."""
    fd = conn.pgconn.socket
    if hasattr(select, "poll"):  # select() cannot watch a descriptor numbered 1024 or more
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # pragma: no cover  (Windows)


class Plumbing:
    """Opens the pool, checks the schema, runs operations as transactions and counts them; see the module."""

    def __init__(
        self,
        url: str,
        *,
        schema: str = "recoverkit",
        pool_size: int = 4,
        connect_timeout: float = CONNECT_TIMEOUT,
        retry_for: float = RETRY_FOR,
    ) -> None:
        _schema.check_schema_name(schema)
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ConfigError(f"PostgresStore: expected `pool_size` to be an integer >= 1, got {pool_size!r}")
        if isinstance(connect_timeout, bool) or not isinstance(connect_timeout, int | float) or not connect_timeout > 0:
            raise ConfigError(f"PostgresStore: expected `connect_timeout` to be seconds > 0, got {connect_timeout!r}")
        if isinstance(retry_for, bool) or not isinstance(retry_for, int | float) or not 0 <= retry_for < 3600:
            raise ConfigError(f"PostgresStore: expected `retry_for` to be seconds >= 0 (and < 3600), got {retry_for!r}")
        self._settings = _conninfo.parse(url)
        self.schema = schema
        self._pid = os.getpid()
        self._lock = threading.Lock()  # guards _closed and the statistics
        self._closed = False
        self._operations = self._failed = self._commits = 0
        self._retries = self._reconnects = self._connection_errors = self._unknown = 0
        self._retry_for = float(retry_for)
        self._timeout = float(connect_timeout)
        #: When each pooled connection was last handed out (see _check); weak, so closed ones drop out.
        self._last_used: weakref.WeakKeyDictionary[Conn, float] = weakref.WeakKeyDictionary()
        kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in self._settings:
            kwargs["connect_timeout"] = max(1, round(connect_timeout))
        # One connection first, outside the pool: its failure is raised with the reason (a pool would retry in
        # the background and report only a timeout), and the schema is checked before anything is served.
        try:
            with psycopg.connect(url, **kwargs) as conn:
                self._configure(conn)
                self.partitions, self._salt = _schema.read_meta(conn, schema, self._settings)
        except psycopg.Error as exc:
            raise _conninfo.connection_error(exc, self._settings, schema) from None
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            url, kwargs=kwargs, min_size=1, max_size=pool_size, open=False, configure=self._configure,
            check=self._check, timeout=connect_timeout, name=f"recoverkit.{schema}",
        )  # fmt: skip
        self._lease_pool: ConnectionPool[Conn] = ConnectionPool(
            url, kwargs=kwargs, min_size=1, max_size=1, open=False, configure=self._configure,
            check=self._check, timeout=connect_timeout, name=f"recoverkit.{schema}.leases",
        )  # fmt: skip
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
            self._lease_pool.open(wait=True, timeout=connect_timeout)
        except PoolTimeout:
            self._pool.close()
            self._lease_pool.close()
            raise StoreError(
                f"PostgresStore: no connection to {self.where} within {connect_timeout} s; check `url` and that the "
                "server accepts connections"
            ) from None

    @property
    def where(self) -> str:
        """``user@host:port/database``, the store's database as error messages name it (never the password)."""
        return _conninfo.describe(self._settings)

    def _configure(self, conn: Conn) -> None:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        # A process frozen in the middle of a transaction (SIGSTOP, a frozen VM, a host starved of CPU) keeps its
        # row locks: a partition's lease row locked by a fenced write would block its take-over for as long as the
        # process stays frozen. The server ends such a session after this long idle in a transaction (rolling it
        # back: nothing of it was committed), and the take-over goes on; the frozen process finds its connection
        # gone when it wakes, and its write is refused or retried like any lost connection's.
        conn.execute(f"SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_MS}")

    def _check(self, conn: Conn) -> None:
        """The pool's check when a connection is taken: ping it if it sat idle for IDLE_CHECK seconds or the
        server sent something on it; close it if the ping fails, so that the pool discards and replaces it.

        A ping is a round trip, as much as a whole one-partition append; a connection in steady use is known to
        work unless the server has since ended its session, which it announces on the socket (polled, no round
        trip). A connection left idle is the kind that a restart, a failover or a firewall has broken silently.
        """
        last = self._last_used.get(conn)
        if last is not None and time.monotonic() - last <= IDLE_CHECK and not _has_input(conn):
            return
        try:
            ConnectionPool.check_connection(conn)
        except psycopg.Error:
            self._add(reconnects=1)
            conn.close()  # a connection the pool gets back open would be handed out again
            raise

    def _usable(self) -> None:
        pid = os.getpid()
        if pid != self._pid:
            raise StoreError(
                f"PostgresStore({self.where}) was opened in process {self._pid} and used in process {pid}: its "
                "connections must not cross a fork; open the store after forking"
            )
        if self._closed:
            raise StoreError(f"PostgresStore({self.where}) was used after close()")

    def _translate(self, name: str, exc: psycopg.Error) -> StoreError:
        reason = _conninfo.scrub(_conninfo.first_line(exc), self._settings) or type(exc).__name__
        return StoreError(f"PostgresStore({self.where}): {name} failed: {reason}")

    def _transaction(
        self, name: str, run: Callable[[Conn], T], *, write: bool, transaction: bool = True, lane: Lane = "data"
    ) -> T:
        """Run ``run`` as one operation, trying again while that is safe (see the module); counted."""
        deadline = time.monotonic() + self._retry_for
        pool = self._lease_pool if lane == "lease" else self._pool
        tries = 0
        while True:
            self._usable()
            attempt = _Try()
            try:
                wait = None if not tries else deadline - time.monotonic()
                result = self._once(pool, run, attempt, transaction, wait)
            except StoreError:
                self._count(write, failed=True)
                raise
            except psycopg.Error as exc:
                verdict = self._judge(exc, attempt, write)
                delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_FIRST * 2**tries))
                if verdict == "retry" and time.monotonic() + delay < deadline:
                    tries += 1
                    self._add(retries=1)
                    _log.info("store_retry", operation=name, tries=tries, error=type(exc).__name__, delay=delay)
                    time.sleep(delay)
                    continue
                self._count(write, failed=True)
                raise self._error(name, exc, verdict, tries) from None
            self._count(write, failed=False)
            if tries:
                _log.warning("store_recovered", operation=name, tries=tries + 1)
            return result

    def _once(
        self, pool: ConnectionPool[Conn], run: Callable[[Conn], T], attempt: _Try, transaction: bool,
        timeout: float | None,
    ) -> T:  # fmt: skip
        # A retry waits for a connection only as long as the retries may still go on; the first try as ever.
        wait = None if timeout is None else min(self._timeout, max(timeout, 0.05))
        with pool.connection(timeout=wait) as conn:
            attempt.conn, attempt.phase = conn, "run"
            self._last_used[conn] = time.monotonic()
            if not transaction:  # one statement, atomic by itself in autocommit mode: it is its own COMMIT
                attempt.phase = "commit"
                return run(conn)
            with conn.transaction():
                result = run(conn)
                attempt.phase = "commit"  # the block's exit sends COMMIT
        return result

    def _judge(self, exc: psycopg.Error, attempt: _Try, write: bool) -> str:
        """``retry`` (nothing of the try can have been applied), ``unknown`` (it may have been committed) or
        ``fail`` (the server refused it, or the store was closed: raise it)."""
        if isinstance(exc, PoolClosed):
            return "fail"
        if isinstance(exc, PoolTimeout):
            self._add(connection_errors=1)
            return "retry"
        if _conninfo.connection_lost(exc, attempt.conn):
            self._add(connection_errors=1, reconnects=1 if attempt.conn is not None else 0)
            if write and attempt.phase == "commit" and not _conninfo.ended_uncommitted(exc):
                self._add(unknown=1)
                return "unknown"
            return "retry"
        return "retry" if _conninfo.conflict(exc) else "fail"

    def _error(self, name: str, exc: psycopg.Error, verdict: str, tries: int) -> StoreError:
        if isinstance(exc, PoolClosed):
            return StoreError(f"PostgresStore({self.where}) was used after close()")
        after = f" (after {tries + 1} tries)" if tries else ""
        if isinstance(exc, PoolTimeout):
            return StoreError(
                f"PostgresStore({self.where}): {name}: no connection free or reachable within the pool's timeout{after}"
            )
        error = self._translate(name, exc)
        if verdict == "unknown":
            _log.error("store_commit_unknown", operation=name, error=type(exc).__name__)
            return StoreError(
                f"{error}; the connection was lost while committing, so whether {name} was applied is unknown (it "
                "was not retried: running it again could apply it twice)"
            )
        return StoreError(f"{error}{after}") if tries else error

    def _write(self, name: str, run: Callable[[Conn], T], *, transaction: bool = True) -> T:
        """Run ``run`` in one transaction, committed before this returns; counted in :meth:`statistics`.

        ``transaction=False`` for an operation of one statement, which autocommit makes a transaction by itself
        (saving the BEGIN and COMMIT round trips).
        """
        return self._transaction(name, run, write=True, transaction=transaction)

    def _read(self, name: str, run: Callable[[Conn], T]) -> T:
        """Run ``run`` in one (read) transaction; not counted."""
        return self._transaction(name, run, write=False)

    def _lease_write(self, name: str, run: Callable[[Conn], T]) -> T:
        """:meth:`_write` on the lease lane (see the module): for the leases' own short operations only."""
        return self._transaction(name, run, write=True, lane="lease")

    def _lease_read(self, name: str, run: Callable[[Conn], T]) -> T:
        """:meth:`_read` on the lease lane (see the module)."""
        return self._transaction(name, run, write=False, lane="lease")

    def _count(self, write: bool, *, failed: bool) -> None:
        if not write:
            return
        with self._lock:
            self._operations += 1
            if failed:
                self._failed += 1
            else:
                self._commits += 1

    def _add(self, *, retries: int = 0, reconnects: int = 0, connection_errors: int = 0, unknown: int = 0) -> None:
        with self._lock:
            self._retries += retries
            self._reconnects += reconnects
            self._connection_errors += connection_errors
            self._unknown += unknown

    def statistics(self) -> StoreStatistics:
        """Writes made through this store object (each its own transaction, so ``largest_group`` is 1), and the
        retries, reconnections, connection errors and unknown outcomes of its reads and writes."""
        # The pool's own failed attempts to open a connection (it keeps trying in the background) count too.
        failed_opens = sum(p.get_stats().get("connections_errors", 0) for p in (self._pool, self._lease_pool))
        with self._lock:
            return StoreStatistics(
                operations=self._operations, failed=self._failed, commits=self._commits,
                largest_group=1 if self._commits else 0, retries=self._retries, reconnects=self._reconnects,
                connection_errors=self._connection_errors + failed_opens, unknown_outcomes=self._unknown,
            )  # fmt: skip

    def close(self) -> None:
        """Close the pool's connections; idempotent. In a forked child it only marks the store closed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if os.getpid() == self._pid:
            self._pool.close()
            self._lease_pool.close()
