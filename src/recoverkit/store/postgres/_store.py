"""``PostgresStore``: the :class:`~recoverkit.store.Store` in a PostgreSQL schema that every host shares."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from ._audit import AuditPart
from ._onsite import PostgresOnsite
from ._records import Records
from ._state import PostgresStates

__all__ = ["PostgresStore"]


class PostgresStore(PostgresOnsite, PostgresStates, AuditPart, Records):
    """A :class:`~recoverkit.store.Store` in PostgreSQL, for several processes on several hosts.

    ``url`` is a libpq URL or connection string (``postgresql://user:password@host:5432/shop``); ``schema`` the
    PostgreSQL schema the store lives in, created beforehand by :func:`~recoverkit.store.postgres.init` (which
    also fixes the number of journal partitions, :attr:`partitions`). ``pool_size`` is the most connections this
    object opens for data (one per thread using it at once), and it opens one more for the leases; ``connect_timeout`` how long opening one may take;
    ``retry_for`` how long an operation that failed for a lost connection or a conflict is tried again, when it
    cannot have been applied (0: never; see :mod:`recoverkit.store.postgres._plumbing` and docs/scaling.md).

    Opening refuses, with :class:`~recoverkit.errors.StoreError` naming the database (never the password) and
    the fix: a server that cannot be reached or refuses the user, a schema that is missing, older than this code
    or newer. Bad options raise :class:`~recoverkit.errors.ConfigError`.

    Besides today's :class:`~recoverkit.store.Store` methods (whose one-sequence journal and checkpoint need a
    store made with one partition), the partitioned journal, partition leases with their fencing epoch, fenced
    checkpoints and fenced claims: :mod:`recoverkit.store.postgres._partitions` says what each promises.
    Every write is committed when its method returns, durable as the server's ``synchronous_commit`` says.
    """

    def check(self) -> list[str]:
        """Problems in the stored data: partitions without their lease or head row, journal positions past a
        head or with a gap, ledger entries in an unknown state. Empty when all is well."""
        from ._schema import schema_problems

        return self._read("check", lambda conn: schema_problems(conn, self.partitions))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"PostgresStore({self.where!r}, schema={self.schema!r}, partitions={self.partitions}, {state})"
