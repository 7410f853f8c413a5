"""``SQLiteStore``: the store in one SQLite file, shared by the worker processes of one host.

How it writes. A store object has one write connection, used by one thread at a time: the *leader*. A write
method queues its operation and then takes the commit lock; whichever caller holds it takes everything queued
(up to :data:`GROUP_LIMIT` operations, its own and other threads'), runs it in one ``BEGIN IMMEDIATE``
transaction, commits once and hands each caller its result: a group commit, so that many threads appending
at once share one fsync. A caller whose operation was committed by another leader finds it done when it gets
the lock. An uncontended caller commits its own operation in its own thread, with no hand-off to another
thread (on a virtual machine a thread wake-up costs more than a WAL commit). Each operation runs inside its
own ``SAVEPOINT``: one that raises is rolled back alone and fails only its own caller. A caller learns of
success only after the commit.

How it reads. Each thread that reads gets its own read-only connection; in WAL mode readers never wait for
the writer, and each read sees the last commit made, by this process or another, when it started.

Several processes. Each opens its own ``SQLiteStore`` on the same path. ``BEGIN IMMEDIATE`` takes the file's
write lock at the start of every write transaction, so checks and the writes that depend on them (``claim``)
are atomic across processes; a process waits up to ``busy_timeout`` seconds for the lock, then the operation
fails with :class:`~recoverkit.errors.StoreError`. The file must be on a local disk: WAL needs shared memory,
which network filesystems do not provide.

Durability (``synchronous``): with ``"normal"`` (the default) a commit is written to the WAL file before the
call returns, but fsynced only at checkpoints, so everything committed survives the process crashing or
being killed (``kill -9``; ``tests/store/test_sqlite_processes.py`` does it), and a power loss or OS crash
may lose the last commits (the file stays consistent). ``"full"`` fsyncs the WAL at every commit, so
commits also survive a power loss, at the cost of one fsync per group commit.

Erasure. Deleted rows (``forget``, ``purge``, ``trim_events``) are overwritten with zeros, in the pages that
keep other rows and in pages freed whole (``PRAGMA secure_delete = ON``). The WAL file still holds the old
page images until a checkpoint copies the new ones into the main file; so after a :meth:`~SQLiteStore.forget`,
the next :meth:`~SQLiteStore.trim_events` (the engine trims right after the checkpoint that follows a forget)
runs :meth:`~SQLiteStore.scrub`: free pages zeroed, the WAL checkpointed into the main file and truncated to
nothing. :attr:`SQLiteStore.last_scrub` says how that went. Backups of the file are out of reach: protect them
as the personal data they hold.

File modes. A store file that does not exist is created readable and writable by its owner only (0600,
whatever the umask); SQLite gives its ``-wal`` and ``-shm`` files the same mode. A file that exists is left at
its mode: that is the operator's choice (``chmod 600`` a file made by an older recoverkit).

Fork. A SQLite connection must never cross a ``fork()``; a store used in a process other than the one that
opened it raises :class:`~recoverkit.errors.StoreError`, and in the child its connections are left alone, not
even closed (a fork hook takes them out of reach). Open the store after forking (in gunicorn, in a
``post_fork`` hook or lazily in the worker).
"""

from __future__ import annotations

# The store is a composition of one part per protocol of recoverkit.store.base, each a mixin of SQLiteFile
# (the connections, the group-committing writer and the lifecycle), in the modules named after what they keep.
from ._sqlite_audit import SQLiteAudit
from ._sqlite_file import FILE_MODE, GROUP_LIMIT, Scrub, SQLiteFile, Synchronous
from ._sqlite_onsite import SQLiteOnsite
from ._sqlite_partitions import SQLitePartitions
from ._sqlite_pipeline import SQLiteCheckpoint, SQLiteJournal, SQLiteLeases, SQLiteLedger
from ._sqlite_records import SQLiteCodes, SQLiteDeadLetters, SQLiteFacts, SQLitePrivacy
from ._sqlite_state import SQLiteStates

__all__ = ["FILE_MODE", "GROUP_LIMIT", "SQLiteStore", "Scrub", "Synchronous"]


class SQLiteStore(
    SQLiteOnsite,
    SQLiteStates,
    SQLitePartitions,
    SQLiteJournal,
    SQLiteCheckpoint,
    SQLiteLeases,
    SQLiteLedger,
    SQLiteFacts,
    SQLiteCodes,
    SQLiteDeadLetters,
    SQLitePrivacy,
    SQLiteAudit,
    SQLiteFile,
):
    """A :class:`~recoverkit.store.Store` in a SQLite file, safe for several threads and several processes.

    ``path`` is created if it does not exist (its directory must). ``synchronous`` is ``"normal"`` or
    ``"full"`` (see the module docstring: both survive a crashed or killed process, ``"full"`` also a power
    loss); ``busy_timeout`` is how many seconds a write waits for another process's transaction.

    ``partitions`` is the journal's number of partitions (1 to 1024, else :class:`ValueError`), fixed when the
    file is created and kept in it: ``None`` takes the file's (1 for a new file), and a number other than the
    file's raises :class:`~recoverkit.errors.StoreError` naming both. It is also a
    :class:`~recoverkit.store.PartitionedStore`, whose leases are judged by this host's clock (``time.time()``):
    with one partition the one-sequence methods (``append_events``, ``save_checkpoint`` ...) are partition 0's
    journal and a checkpoint beside it; with more they raise :class:`~recoverkit.errors.StoreError`.

    Opening applies the schema migrations the file lacks. It raises :class:`~recoverkit.errors.StoreError`
    when the file is not a SQLite database, is another application's, or was written by a newer recoverkit;
    bad options raise :class:`~recoverkit.errors.ConfigError`. Use it as a context manager or call
    :meth:`close`; do not close it while other threads are still using it. A process that exits without
    closing loses no committed write.

    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp, SQLiteStore(pathlib.Path(tmp) / "state.db") as store:
    ...     store.append_events([b'{"event": "page_view"}'], now=1_767_225_600.0)
    1
    """
