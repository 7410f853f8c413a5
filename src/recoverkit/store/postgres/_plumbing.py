"""The connection plumbing every part of :class:`~recoverkit.store.postgres.PostgresStore` runs its SQL through.

One :class:`psycopg_pool.ConnectionPool` per store object. Connections are in autocommit mode and every
operation is one explicit transaction (``conn.transaction()``): committed when the method returns, rolled back
whole when it raises. Each new connection has its ``search_path`` set to the store's schema, so the SQL names
tables bare.

Synchronous on purpose: today's :class:`~recoverkit.store.Store` protocol is synchronous (the engine calls it
in a worker thread), and a sync pool of a few connections serves the threads of one process. An async path
(``psycopg.AsyncConnection`` with ``psycopg_pool.AsyncConnectionPool``) would let the engine await the store on
its event loop instead of a thread hop per call, and pipeline the journal's appends; it needs an async store
protocol first, and would change only this module and the call sites, not the SQL.

Connections lost (a database restart, a failover) are noticed when a connection that sat idle for a second is
taken from the pool (it is pinged first) and replaced; an operation whose connection broke mid-transaction
fails with :class:`~recoverkit.errors.StoreError` and was not committed (or, for a failure at COMMIT itself,
PostgreSQL cannot say: the caller treats it as it treats a crash).

Fork: a pool's connections and threads must not cross a ``fork()``; a store used in another process than the
one that opened it raises :class:`~recoverkit.errors.StoreError` (open it after forking).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Final, TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from ...errors import ConfigError, StoreError
from .._lifecycle import StoreStatistics
from . import _conninfo, _schema
from ._conninfo import Conn

__all__ = ["Conn", "Plumbing"]

T = TypeVar("T")
#: Seconds a pooled connection may sit idle before it is pinged when taken again (see Plumbing._check_idle).
IDLE_CHECK: Final = 1.0
#: Seconds a new connection may take to open, unless the URL says (``connect_timeout``).
CONNECT_TIMEOUT: Final = 10.0


class Plumbing:
    """Opens the pool, checks the schema, runs operations as transactions and counts them; see the module."""

    def __init__(
        self, url: str, *, schema: str = "recoverkit", pool_size: int = 4, connect_timeout: float = CONNECT_TIMEOUT
    ) -> None:
        _schema.check_schema_name(schema)
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ConfigError(f"PostgresStore: expected `pool_size` to be an integer >= 1, got {pool_size!r}")
        if isinstance(connect_timeout, bool) or not isinstance(connect_timeout, int | float) or not connect_timeout > 0:
            raise ConfigError(f"PostgresStore: expected `connect_timeout` to be seconds > 0, got {connect_timeout!r}")
        self._settings = _conninfo.parse(url)
        self.schema = schema
        self._pid = os.getpid()
        self._lock = threading.Lock()  # guards _closed and the statistics
        self._closed = False
        self._operations = self._failed = self._commits = 0
        #: When each pooled connection was last handed out (see _check_idle); weak, so closed ones drop out.
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
            check=self._check_idle, timeout=connect_timeout, name=f"recoverkit.{schema}",
        )  # fmt: skip
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
        except PoolTimeout:
            self._pool.close()
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

    def _check_idle(self, conn: Conn) -> None:
        """The pool's check when a connection is taken: ping it only if it sat idle for IDLE_CHECK seconds.

        A ping is a round trip, as much as a whole one-partition append; a connection in steady use is known to
        work, and one left idle is the kind that a database restart or a failover has broken. A ping that fails
        makes the pool discard the connection and hand out another.
        """
        last = self._last_used.get(conn)
        if last is None or time.monotonic() - last > IDLE_CHECK:
            ConnectionPool.check_connection(conn)

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

    def _transaction(self, name: str, run: Callable[[Conn], T], *, write: bool, transaction: bool = True) -> T:
        self._usable()
        try:
            with self._pool.connection() as conn:
                self._last_used[conn] = time.monotonic()
                if transaction:
                    with conn.transaction():
                        result = run(conn)
                else:  # one statement, atomic by itself in autocommit mode
                    result = run(conn)
        except StoreError:
            self._count(write, failed=True)
            raise
        except psycopg.Error as exc:
            self._count(write, failed=True)
            raise self._translate(name, exc) from None
        except PoolTimeout:
            self._count(write, failed=True)
            raise StoreError(
                f"PostgresStore({self.where}): {name}: no connection free or reachable within the pool's timeout"
            ) from None
        self._count(write, failed=False)
        return result

    def _write(self, name: str, run: Callable[[Conn], T], *, transaction: bool = True) -> T:
        """Run ``run`` in one transaction, committed before this returns; counted in :meth:`statistics`.

        ``transaction=False`` for an operation of one statement, which autocommit makes a transaction by itself
        (saving the BEGIN and COMMIT round trips).
        """
        return self._transaction(name, run, write=True, transaction=transaction)

    def _read(self, name: str, run: Callable[[Conn], T]) -> T:
        """Run ``run`` in one (read) transaction; not counted."""
        return self._transaction(name, run, write=False)

    def _count(self, write: bool, *, failed: bool) -> None:
        if not write:
            return
        with self._lock:
            self._operations += 1
            if failed:
                self._failed += 1
            else:
                self._commits += 1

    def statistics(self) -> StoreStatistics:
        """Writes made through this store object; each is its own transaction, so ``largest_group`` is 1."""
        with self._lock:
            return StoreStatistics(
                operations=self._operations, failed=self._failed, commits=self._commits,
                largest_group=1 if self._commits else 0,
            )  # fmt: skip

    def close(self) -> None:
        """Close the pool's connections; idempotent. In a forked child it only marks the store closed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if os.getpid() == self._pid:
            self._pool.close()
