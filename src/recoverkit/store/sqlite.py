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

import collections
import contextlib
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Generic, Literal, Self, TypeVar, get_args

import msgspec

from .._files import PRIVATE_MODE, open_private
from .._log import get_logger
from ..errors import ConfigError, StoreError
from . import _schema
from .base import (
    FINISHABLE,
    FORGOTTEN,
    LIMIT_ANSWERS,
    PIPELINE_LEASE,
    PURGEABLE,
    RESOLVABLE,
    Assignment,
    Checkpoint,
    Claim,
    ClaimRequest,
    CodeLimit,
    CodeRecord,
    ContactExport,
    Conversion,
    DeadLetterRecord,
    Fact,
    FinishRequest,
    ForgetReport,
    IssueAnswer,
    JournalEntry,
    LeaseTaken,
    LedgerEntry,
    LedgerState,
    LinkVisit,
    MessageOutcome,
    Outcome,
    PurgeReport,
    RedeemResult,
    Resolution,
    StoreStatistics,
    cannot_finish,
    cannot_resolve,
    check_attempt,
    check_claim,
    check_code,
    check_contact,
    check_count,
    check_fact,
    check_lease,
    check_limits,
    check_outcome,
    check_position,
    check_purchase,
    check_purge,
    check_read_limit,
    check_reason,
    check_redeem,
    check_resolution,
    check_states,
    contact_hash,
    export_letter,
    judge_redemption,
    limit_key,
    missing_dead_letter,
    missing_entry,
)

__all__ = ["FILE_MODE", "GROUP_LIMIT", "SQLiteStore", "Scrub", "Synchronous"]

#: ``PRAGMA synchronous`` settings a store accepts; see the module docstring.
Synchronous = Literal["normal", "full"]
#: The most operations one group commit carries. When very many threads write at once, it bounds how long
#: one transaction holds the file's write lock, which the other processes wait on.
GROUP_LIMIT: Final = 1000
#: The mode of a store file this class creates (SQLite gives the ``-wal`` and ``-shm`` files the same): the
#: file holds personal data, so nobody but its owner reads it.
FILE_MODE: Final = PRIVATE_MODE
#: How long one attempt of scrub() waits for readers to leave the old snapshot before trying again: short,
#: because a TRUNCATE checkpoint holds off every writer of the file while it waits.
_SCRUB_WAIT_MS: Final = 250
#: Attempts of scrub()'s checkpoint before it reports the WAL as not truncated.
_SCRUB_ATTEMPTS: Final = 4
#: The largest zero blob scrub() writes at once (SQLite refuses values over SQLITE_MAX_LENGTH, 1 GB).
_SCRUB_CHUNK: Final = 64 * 1024 * 1024

_log = get_logger("recoverkit.store")

T = TypeVar("T")
_Op = Callable[[sqlite3.Connection], T]
_LEDGER_COLUMNS: Final = (
    "key, cart_key, contact_key, channel, state, owner, started_at, claimed_at, finished_at, error"
)
_CODE_COLUMNS: Final = (
    "hash, cart_key, contact_key, kind, issued_at, expires_at, percent, amount, currency, min_value, domain, device, "
    "redeemed_at, redeemed_order"
)
#: The column each kind of limit counts codes by; names of ours, never the caller's, so formatting them in is safe.
_LIMIT_COLUMNS: Final = {"contact": "contact_key", "domain": "domain", "device": "device"}
#: Connections a forked child found itself holding: kept referenced so that they are not closed there either
#: (closing runs SQLite's locking and WAL code on state copied from the parent).
_ABANDONED_IN_CHILD: list[sqlite3.Connection] = []
#: Every store not yet closed, so that a fork can abandon their connections in the child at once.
_OPEN_STORES: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()


class Scrub(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`SQLiteStore.scrub` did.

    ``free_pages_zeroed``: free pages overwritten with zeros now (0 once the file has been scrubbed: pages freed
    since are zeroed as they are freed). ``wal_truncated``: the WAL was copied into the main file and cut to
    nothing, so no old page image is left in it; when ``False``, ``wal_frames_left`` frames remain because other
    connections were still reading an older snapshot, and the next scrub (or those readers closing) clears them.
    """

    free_pages_zeroed: int
    wal_truncated: bool
    wal_frames_left: int = 0


class _Pending(Generic[T]):
    """An operation queued for the writer and the future its caller waits on."""

    __slots__ = ("future", "name", "run")

    def __init__(self, name: str, run: _Op[T]) -> None:
        self.name = name
        self.run = run
        self.future: Future[T] = Future()


class _Reader:
    """One thread's read connection; closed when the thread's locals go (the thread ended) or at close()."""

    __slots__ = ("__weakref__", "conn", "finalizer")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.finalizer = weakref.finalize(self, conn.close)
        self.finalizer.atexit = False  # the process is ending; SQLite cleans up after it


class SQLiteStore:
    """A :class:`~recoverkit.store.Store` in a SQLite file, safe for several threads and several processes.

    ``path`` is created if it does not exist (its directory must). ``synchronous`` is ``"normal"`` or
    ``"full"`` (see the module docstring: both survive a crashed or killed process, ``"full"`` also a power
    loss); ``busy_timeout`` is how many seconds a write waits for another process's transaction.

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

    def __init__(
        self, path: str | os.PathLike[str], *, synchronous: Synchronous = "normal", busy_timeout: float = 5.0
    ) -> None:
        if synchronous not in get_args(Synchronous):
            raise ConfigError(f"SQLiteStore: expected `synchronous` to be 'normal' or 'full', got {synchronous!r}")
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float) or not (
            0 <= busy_timeout < math.inf
        ):
            raise ConfigError(f"SQLiteStore: expected `busy_timeout` to be seconds >= 0, got {busy_timeout!r}")
        if str(path) in ("", ":memory:") or str(path).startswith("file:"):
            raise ConfigError(
                f"SQLiteStore: expected the path of a file, got {str(path)!r} (for a store in memory use MemoryStore)"
            )
        self.path = Path(path)
        self.synchronous: Synchronous = synchronous
        self.busy_timeout = float(busy_timeout)
        self._pid = os.getpid()
        self._lock = threading.Lock()  # guards _closed, the reader set and the statistics
        self._closed = False
        self._local = threading.local()
        self._readers: weakref.WeakSet[_Reader] = weakref.WeakSet()
        # Unbounded by construction, not by oversight: every caller blocks until its operation is done, so the
        # queue never holds more operations than there are threads calling the store.
        self._queue: collections.deque[_Pending[Any]] = collections.deque()
        self._commit_lock = threading.Lock()  # held by the leader: the one thread using the write connection
        self._operations = self._failed = self._commits = self._largest_group = 0
        #: A forget() erased rows whose old images the file may still hold: the next trim_events() scrubs.
        self._scrub_due = False
        #: What the last :meth:`scrub` did (``None`` before the first).
        self.last_scrub: Scrub | None = None
        self._create_private()
        self._conn, self._salt = self._open_writer()
        _OPEN_STORES.add(self)

    # -- opening --------------------------------------------------------------------------------------------

    def _create_private(self) -> None:
        """Create the file with FILE_MODE if it does not exist, before SQLite does with the umask's mode."""
        # An existing file keeps its mode (another process may just have created it: same thing).
        try:
            fd = open_private(self.path, os.O_RDONLY)
        except OSError:
            return  # no directory, no permission: sqlite3.connect() says so in the error the caller sees
        os.close(fd)

    def _connect(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: no implicit transactions; we say BEGIN IMMEDIATE ourselves. The
            # connection is handed between threads (opened here, used by the writer or a reader, closed by
            # close()), never used by two at once.
            return sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open {self.path}: {exc} (expected a file path in an existing, writable directory)"
            ) from exc

    def _open_writer(self) -> tuple[sqlite3.Connection, bytes]:
        conn = self._connect()
        try:
            # Persistent in the file; switching a new file waits (busy_timeout) for other processes' locks.
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            if mode != "wal":
                raise StoreError(
                    f"{self.path}: SQLite refused WAL mode (journal_mode is {mode!r}); expected a file on a local "
                    "filesystem"
                )
            conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")  # one of two literals, checked
            # forget(), purge() and trim_events() must erase, not only unlink: ON zeroes deleted content in
            # the pages that stay and in pages freed whole (FAST leaves the latter as they were: an erased
            # customer's events could be read back from the free list). It costs a write of each freed page.
            conn.execute("PRAGMA secure_delete = ON")
            _schema.migrate(conn, str(self.path))
            salt = _schema.read_salt(conn, str(self.path))  # fixed for the file's life: read it once
            self._probe_writable(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise self._translate("open", exc) from exc
        except BaseException:
            conn.close()
            raise
        return conn, salt

    def _probe_writable(self, conn: sqlite3.Connection) -> None:
        """Refuse, at open, a file that SQLite opened but cannot write (immutable, read-only mount, mode).

        SQLite opens such a file read-only without a word, and every write would then fail: the engine would
        start and accept events it could never keep. A row is written in a transaction that is rolled back, so
        the file does not change. A write lock held by another process past ``busy_timeout`` proves nothing
        either way and is let pass (that process writes the file). A full disk passes too (nothing reaches the
        disk here): the journal counts and reports what it refuses later.
        """
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('write_probe', x'')")
        except sqlite3.Error as exc:
            _rollback(conn)
            if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return
            reasons = _schema.write_problems(self.path)
            why = "; ".join(reasons) if reasons else "the operating system gave no reason; expected a writable file"
            raise StoreError(
                f"refusing to open {self.path}, which SQLite cannot write ({exc}), rather than accept events that "
                f"could not be kept: {why}"
            ) from exc
        _rollback(conn)

    def _translate(self, name: str, exc: sqlite3.Error) -> StoreError:
        """A StoreError that says what went wrong with which file, for a sqlite3 error."""
        code = getattr(exc, "sqlite_errorcode", None)
        if code == sqlite3.SQLITE_NOTADB:
            message = f"{self.path} is not a SQLite database; expected a recoverkit store or a path for a new one"
        elif code == sqlite3.SQLITE_BUSY:
            message = (
                f"{self.path}: {name}: another process held the write lock for longer than busy_timeout="
                f"{self.busy_timeout}s ({exc})"
            )
        else:
            message = f"{self.path}: {name} failed: {exc}"
        error = StoreError(message)
        error.__cause__ = exc
        return error

    # -- plumbing -------------------------------------------------------------------------------------------

    def _usable(self) -> None:
        pid = os.getpid()
        if pid != self._pid:
            raise StoreError(
                f"SQLiteStore({self.path}) was opened in process {self._pid} and used in process {pid}: a SQLite "
                "connection must not cross a fork; open the store after forking"
            )
        if self._closed:
            raise StoreError(f"SQLiteStore({self.path}) was used after close()")

    def _write(self, name: str, run: _Op[T]) -> T:
        self._usable()
        pending = _Pending(name, run)
        with self._lock:
            if self._closed:  # checked again under the lock: close() may have started meanwhile
                raise StoreError(f"SQLiteStore({self.path}) was used after close()")
            self._queue.append(pending)
        while not pending.future.done():
            with self._commit_lock:
                if not pending.future.done():  # nobody took it yet: lead a group, which includes it
                    self._commit_queued()
        return pending.future.result()

    def _read(self, name: str, run: _Op[T]) -> T:
        self._usable()
        reader: _Reader | None = getattr(self._local, "reader", None)
        if reader is None:
            conn = self._connect()
            try:
                conn.execute("PRAGMA query_only = 1")  # a read connection that tried to write would be a bug
            except sqlite3.Error as exc:
                conn.close()
                raise self._translate(name, exc) from exc
            reader = _Reader(conn)
            with self._lock:
                if self._closed:  # close() ran since _usable(): it would not know to close this one
                    reader.finalizer()
                    raise StoreError(f"SQLiteStore({self.path}) was used after close()")
                self._readers.add(reader)
            self._local.reader = reader
        try:
            return run(reader.conn)
        except sqlite3.Error as exc:
            raise self._translate(name, exc) from exc

    def _commit_queued(self) -> None:
        """Commit up to GROUP_LIMIT queued operations in one transaction (the caller holds the commit lock)."""
        queued = self._queue
        group: list[_Pending[Any]] = []
        while queued and len(group) < GROUP_LIMIT:
            group.append(queued.popleft())
        if not group:
            return
        try:
            self._commit_group(self._conn, group)
        except BaseException as exc:  # a bug of ours: fail these callers, never leave them waiting forever
            _rollback(self._conn)
            error = StoreError(f"{self.path}: the store's writer failed: {exc!r}")
            for pending in group:
                if not pending.future.done():
                    pending.future.set_exception(error)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):  # the leader's own thread is being stopped
                raise

    def _commit_group(self, conn: sqlite3.Connection, group: list[_Pending[Any]]) -> None:
        done: list[tuple[_Pending[Any], Any]] = []
        failed: list[tuple[_Pending[Any], Exception]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._fail_all(group, exc, "begin")
            return
        for index, pending in enumerate(group):
            try:
                conn.execute("SAVEPOINT op")
                result = pending.run(conn)
                conn.execute("RELEASE op")
            except Exception as exc:
                error: Exception = self._translate(pending.name, exc) if isinstance(exc, sqlite3.Error) else exc
                try:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                except sqlite3.Error as rollback_exc:
                    # SQLite ended the whole transaction (disk full, I/O error): nothing of the group is
                    # committed, so every caller must hear of it.
                    _rollback(conn)
                    failed.append((pending, error))
                    self._fail_all([p for p, _ in done] + group[index + 1 :], rollback_exc, "rollback", failed)
                    return
                failed.append((pending, error))
            else:
                done.append((pending, result))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            self._fail_all([p for p, _ in done], exc, "commit", failed)
            return
        with self._lock:
            self._operations += len(group)
            self._failed += len(failed)
            self._commits += 1
            self._largest_group = max(self._largest_group, len(group))
        for pending, result in done:
            pending.future.set_result(result)
        for pending, error in failed:
            pending.future.set_exception(error)

    def _fail_all(
        self,
        group: list[_Pending[Any]],
        exc: sqlite3.Error,
        step: str,
        failed: list[tuple[_Pending[Any], Exception]] | None = None,
    ) -> None:
        failed = list(failed or [])
        failed += [(pending, self._translate(f"{pending.name} ({step})", exc)) for pending in group]
        with self._lock:
            self._operations += len(failed)
            self._failed += len(failed)
        for pending, error in failed:
            pending.future.set_exception(error)

    # -- journal --------------------------------------------------------------------------------------------

    def append_events(self, events: Sequence[bytes], *, now: float) -> int:
        if not events:
            return self.last_seq()
        rows = [(data, now) for data in events]

        def run(conn: sqlite3.Connection) -> int:
            conn.executemany("INSERT INTO journal (data, accepted_at) VALUES (?, ?)", rows)
            return int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])

        return self._write("append_events", run)

    def read_events(self, after: int, limit: int) -> list[JournalEntry]:
        check_read_limit(after, limit)

        def run(conn: sqlite3.Connection) -> list[JournalEntry]:
            rows = conn.execute(
                "SELECT seq, data, accepted_at FROM journal WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
            ).fetchall()
            return [JournalEntry(seq=seq, data=data, accepted_at=at) for seq, data, at in rows]

        return self._read("read_events", run)

    def trim_events(self, through: int) -> int:
        """Delete the journal through ``through``; after a :meth:`forget`, also :meth:`scrub` the file."""
        trimmed = self._write(
            "trim_events", lambda conn: conn.execute("DELETE FROM journal WHERE seq <= ?", (through,)).rowcount
        )
        if self._scrub_due:
            self._scrub_after_forget()
        return trimmed

    def last_seq(self) -> int:
        return self._read("last_seq", _schema.last_seq)

    # -- checkpoint -----------------------------------------------------------------------------------------

    def save_checkpoint(self, position: int, state: bytes, *, now: float) -> bool:
        check_position(position)

        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT INTO checkpoint (id, position, state, saved_at) VALUES (1, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET position = excluded.position, state = excluded.state, "
                "saved_at = excluded.saved_at WHERE excluded.position >= checkpoint.position",
                (position, state, now),
            )
            return cursor.rowcount > 0

        return self._write("save_checkpoint", run)

    def load_checkpoint(self) -> Checkpoint | None:
        def run(conn: sqlite3.Connection) -> Checkpoint | None:
            row = conn.execute("SELECT position, state, saved_at FROM checkpoint WHERE id = 1").fetchone()
            return None if row is None else Checkpoint(position=row[0], state=row[1], saved_at=row[2])

        return self._read("load_checkpoint", run)

    # -- purchases and the ledger ---------------------------------------------------------------------------

    def record_purchase(self, *, cart_key: str | None, contact_key: str | None, at: float) -> None:
        check_purchase(cart_key, contact_key)
        rows = [(kind, key, at) for kind, key in (("cart", cart_key), ("contact", contact_key)) if key is not None]

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO purchases (kind, key, at) VALUES (?, ?, ?) "
                "ON CONFLICT (kind, key) DO UPDATE SET at = max(at, excluded.at)",
                rows,
            )

        self._write("record_purchase", run)

    def claim(
        self,
        key: str,
        *,
        cart_key: str,
        contact_key: str,
        channel: str,
        started_at: float,
        owner: str,
        now: float,
        at: float | None = None,
    ) -> Claim:
        request = ClaimRequest(
            key=key, cart_key=cart_key, contact_key=contact_key, channel=channel, started_at=started_at, owner=owner,
            now=now, at=at,
        )  # fmt: skip
        return self.claim_many([request])[0]

    def claim_many(self, requests: Sequence[ClaimRequest]) -> list[Claim]:
        for r in requests:
            check_claim(r.key, r.owner)
        hashes = [self.hash_contact(r.contact_key) if r.contact_key else "" for r in requests]

        def run(conn: sqlite3.Connection) -> list[Claim]:
            # One transaction, under the file's write lock: nobody can claim a key between the checks and the
            # insert, in this process or another.
            return [_claim(conn, r, hashed) for r, hashed in zip(requests, hashes, strict=True)]

        return self._write("claim", run) if requests else []

    def finish(self, key: str, outcome: Outcome, *, now: float, error: str | None = None) -> None:
        check_outcome(outcome)
        error_or_none = self.finish_many([FinishRequest(key=key, outcome=outcome, now=now, error=error)])[0]
        if error_or_none is not None:
            raise error_or_none

    def finish_many(self, requests: Sequence[FinishRequest]) -> list[StoreError | None]:
        for r in requests:
            check_outcome(r.outcome)

        def run(conn: sqlite3.Connection) -> list[StoreError | None]:
            answers: list[StoreError | None] = []
            for r in requests:
                try:
                    state = _ledger_state(conn, r.key)
                except StoreError as exc:  # no entry: refused like the rest, the others still recorded
                    answers.append(exc)
                    continue
                if state not in FINISHABLE:
                    answers.append(cannot_finish(r.key, state))
                    continue
                conn.execute(
                    "UPDATE ledger SET state = ?, finished_at = ?, error = ? WHERE key = ?",
                    (r.outcome, r.now, r.error, r.key),
                )
                answers.append(None)
            return answers

        return self._write("finish", run) if requests else []

    def ledger(self, states: Collection[LedgerState] | None = None) -> list[LedgerEntry]:
        check_states(states)
        wanted = None if states is None else sorted(set(states))

        def run(conn: sqlite3.Connection) -> list[LedgerEntry]:
            if wanted is None:
                rows = conn.execute(f"SELECT {_LEDGER_COLUMNS} FROM ledger ORDER BY rowid").fetchall()
            else:
                marks = ", ".join("?" * len(wanted))
                rows = conn.execute(
                    f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE state IN ({marks}) ORDER BY rowid", wanted
                ).fetchall()
            return [_ledger_entry(row) for row in rows]

        return self._read("ledger", run)

    def mark_unknown(self, owner: str | None = None) -> int:
        def run(conn: sqlite3.Connection) -> int:
            if owner is None:
                return conn.execute("UPDATE ledger SET state = 'unknown' WHERE state = 'sending'").rowcount
            return conn.execute(
                "UPDATE ledger SET state = 'unknown' WHERE state = 'sending' AND owner = ?", (owner,)
            ).rowcount

        return self._write("mark_unknown", run)

    def resolve(self, key: str, outcome: Resolution) -> None:
        check_resolution(outcome)

        def run(conn: sqlite3.Connection) -> None:
            state = _ledger_state(conn, key)
            if state not in RESOLVABLE:
                raise cannot_resolve(key, state)
            if outcome == "retry":
                conn.execute("DELETE FROM ledger WHERE key = ?", (key,))
            else:
                conn.execute("UPDATE ledger SET state = 'sent' WHERE key = ?", (key,))

        self._write("resolve", run)

    # -- leases ---------------------------------------------------------------------------------------------

    def acquire_lease(self, name: str, owner: str, *, ttl: float, now: float) -> bool:
        return self.take_lease(name, owner, ttl=ttl, now=now) is not None

    def take_lease(self, name: str, owner: str, *, ttl: float, now: float) -> LeaseTaken | None:
        check_lease(name, owner, ttl)

        def run(conn: sqlite3.Connection) -> LeaseTaken | None:
            held = conn.execute("SELECT owner, expires_at FROM leases WHERE name = ?", (name,)).fetchone()
            if held is not None and held[0] != owner and held[1] > now:
                return None
            conn.execute(
                "INSERT OR REPLACE INTO leases (name, owner, expires_at) VALUES (?, ?, ?)", (name, owner, now + ttl)
            )
            return "renewed" if held is not None and held[0] == owner else "taken"

        return self._write("acquire_lease", run)

    def release_lease(self, name: str, owner: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

        self._write("release_lease", run)

    def lease_holder(self, name: str, *, now: float) -> str | None:
        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT owner FROM leases WHERE name = ? AND expires_at > ?", (name, now)).fetchone()
            return None if row is None else str(row[0])

        return self._read("lease_holder", run)

    # -- dead letters ---------------------------------------------------------------------------------------

    def add_dead_letter(
        self, key: str, data: bytes, *, error: str, attempts: int, permanent: bool, at: float, contact_key: str = ""
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            # Delete, then insert: a replaced letter moves to the end of the list, as the newest.
            conn.execute("DELETE FROM dead_letters WHERE key = ?", (key,))
            conn.execute(
                "INSERT INTO dead_letters (key, data, error, attempts, permanent, at, contact_key) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, data, error, attempts, int(permanent), at, contact_key),
            )

        self._write("add_dead_letter", run)

    def dead_letters(self) -> list[DeadLetterRecord]:
        def run(conn: sqlite3.Connection) -> list[DeadLetterRecord]:
            rows = conn.execute(
                "SELECT key, data, error, attempts, permanent, at, contact_key FROM dead_letters WHERE resent = 0 "
                "ORDER BY rowid"
            ).fetchall()
            return [
                DeadLetterRecord(key=k, data=d, error=e, attempts=n, permanent=bool(p), at=at, contact_key=c)
                for k, d, e, n, p, at, c in rows
            ]

        return self._read("dead_letters", run)

    def mark_resent(self, key: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            if conn.execute("UPDATE dead_letters SET resent = 1 WHERE key = ?", (key,)).rowcount == 0:
                raise missing_dead_letter(key)

        self._write("mark_resent", run)

    # -- data protection and retention ----------------------------------------------------------------------

    def hash_contact(self, contact_key: str) -> str:
        check_contact("hash_contact", contact_key)
        self._usable()
        return contact_hash(self._salt, contact_key)

    def suppress(self, contact_key: str, *, reason: str, at: float) -> None:
        check_contact("suppress", contact_key)
        check_reason(reason)
        hashed = self.hash_contact(contact_key)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO suppression (hash, reason, at) VALUES (?, ?, ?) ON CONFLICT (hash) DO NOTHING",
                (hashed, reason, at),
            )

        self._write("suppress", run)

    def is_suppressed(self, contact_key: str) -> bool:
        check_contact("is_suppressed", contact_key)
        hashed = self.hash_contact(contact_key)
        return self._read(
            "is_suppressed",
            lambda conn: conn.execute("SELECT 1 FROM suppression WHERE hash = ?", (hashed,)).fetchone() is not None,
        )

    def forget(self, contact_key: str, *, at: float) -> ForgetReport:
        check_contact("forget", contact_key)
        hashed = self.hash_contact(contact_key)

        def run(conn: sqlite3.Connection) -> ForgetReport:
            # One operation, so one savepoint of one transaction: all of it is committed or none.
            letters = conn.execute("DELETE FROM dead_letters WHERE contact_key = ?", (contact_key,)).rowcount
            purchases = conn.execute(
                "DELETE FROM purchases WHERE kind = 'contact' AND key = ?", (contact_key,)
            ).rowcount
            entries = conn.execute(
                "UPDATE ledger SET contact_key = ? WHERE contact_key = ?", (hashed, contact_key)
            ).rowcount
            codes = conn.execute(
                "UPDATE codes SET contact_key = ? WHERE contact_key = ?", (hashed, contact_key)
            ).rowcount
            facts = sum(
                conn.execute(f"UPDATE {t} SET contact_key = ? WHERE contact_key = ?", (hashed, contact_key)).rowcount
                for t in ("assignments", "conversions", "outcomes")
            )
            changed = conn.execute(
                "INSERT INTO suppression (hash, reason, at) VALUES (?, ?, ?) "
                "ON CONFLICT (hash) DO UPDATE SET reason = excluded.reason, at = excluded.at "
                "WHERE reason <> excluded.reason",
                (hashed, FORGOTTEN, at),
            ).rowcount
            return ForgetReport(
                ledger_entries=entries, dead_letters=letters, purchases=purchases, already_forgotten=changed == 0,
                codes=codes, facts=facts,
            )  # fmt: skip

        report = self._write("forget", run)
        # Not scrubbed here: the engine trims the journal (the customer's events) right after, and one scrub
        # then covers both. A caller without an engine calls scrub() itself.
        self._scrub_due = True
        return report

    def scrub(self) -> Scrub:
        """Leave no copy of erased rows in the file: zero its free pages, then checkpoint the WAL into the main
        file and truncate it (``PRAGMA wal_checkpoint(TRUNCATE)``).

        The checkpoint must wait for other connections (other processes) to finish reading older snapshots;
        it tries a few times for a fraction of a second each, holding off writers meanwhile, and otherwise
        reports ``wal_truncated=False`` with the frames left rather than block the shop. Free pages are
        zeroed once per file (a store file made by an older recoverkit may hold old content there); pages freed
        since are zeroed as they are freed. Raises :class:`~recoverkit.errors.StoreError` if the file cannot
        be written. Also :attr:`last_scrub`.
        """
        zeroed = self._write("scrub", _zero_free_pages)
        busy, frames = 1, -1
        for attempt in range(_SCRUB_ATTEMPTS):
            if attempt:
                time.sleep(0.05 * 2**attempt)  # readers finish their snapshot meanwhile
            self._usable()
            with self._commit_lock:  # our writer connection is ours alone while it checkpoints
                conn = self._conn
                try:
                    conn.execute(f"PRAGMA busy_timeout = {_SCRUB_WAIT_MS:d}")
                    busy, frames, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                except sqlite3.Error as exc:
                    raise self._translate("scrub", exc) from exc
                finally:
                    conn.execute(f"PRAGMA busy_timeout = {round(self.busy_timeout * 1000):d}")
            if not busy:
                break
        report = Scrub(free_pages_zeroed=zeroed, wal_truncated=not busy, wal_frames_left=max(frames, 0) if busy else 0)
        self.last_scrub = report
        return report

    def _scrub_after_forget(self) -> None:
        try:
            report = self.scrub()
        except StoreError as exc:
            _log.error("store_scrub_failed", error=str(exc))
            return  # still due: the next trim tries again
        self._scrub_due = not report.wal_truncated
        if report.wal_truncated:
            _log.info("store_scrubbed", free_pages_zeroed=report.free_pages_zeroed)
        else:
            _log.warning(
                "store_wal_not_truncated", frames_left=report.wal_frames_left,
                why="other connections were reading an older snapshot; the next checkpoint tries again",
            )  # fmt: skip

    def export(self, contact_key: str) -> ContactExport:
        check_contact("export", contact_key)
        hashed = self.hash_contact(contact_key)

        def run(conn: sqlite3.Connection) -> ContactExport:
            conn.execute("BEGIN")  # one snapshot for every query: a forget() between them must not show half
            try:
                ledger = conn.execute(
                    f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE contact_key IN (?, ?) ORDER BY rowid",
                    (contact_key, hashed),
                ).fetchall()
                letters = conn.execute(
                    "SELECT key, data, error, attempts, permanent, at, resent FROM dead_letters "
                    "WHERE contact_key = ? ORDER BY rowid",
                    (contact_key,),
                ).fetchall()
                bought = conn.execute(
                    "SELECT at FROM purchases WHERE kind = 'contact' AND key = ?", (contact_key,)
                ).fetchone()
                suppressed = conn.execute("SELECT 1 FROM suppression WHERE hash = ?", (hashed,)).fetchone()
                codes = conn.execute(
                    f"SELECT {_CODE_COLUMNS} FROM codes WHERE contact_key IN (?, ?) ORDER BY issued_at, hash",
                    (contact_key, hashed),
                ).fetchall()
                assignments = conn.execute(
                    f"SELECT {_ASSIGNMENT_COLUMNS} FROM assignments WHERE contact_key IN (?, ?) ORDER BY assigned_at",
                    (contact_key, hashed),
                ).fetchall()
                conversions = conn.execute(
                    f"SELECT {_CONVERSION_COLUMNS} FROM conversions WHERE contact_key IN (?, ?) ORDER BY at",
                    (contact_key, hashed),
                ).fetchall()
                outcomes = conn.execute(
                    f"SELECT {_OUTCOME_COLUMNS} FROM outcomes WHERE contact_key IN (?, ?) ORDER BY at, key",
                    (contact_key, hashed),
                ).fetchall()
            finally:
                conn.execute("COMMIT")  # a read transaction: ends the snapshot, writes nothing
            return ContactExport(
                contact_key=contact_key,
                ledger=[_ledger_entry(row) for row in ledger],
                dead_letters=[
                    export_letter(k, d, error=e, attempts=n, permanent=bool(p), at=at, resent=bool(r))
                    for k, d, e, n, p, at, r in letters
                ],
                purchased_at=None if bought is None else bought[0],
                suppressed=suppressed is not None,
                codes=[_code_record(row) for row in codes],
                assignments=[_assignment(row) for row in assignments],
                conversions=[_conversion(row) for row in conversions],
                outcomes=[MessageOutcome(**dict(zip(_OUTCOME_FIELDS, row, strict=True))) for row in outcomes],
            )

        return self._read("export", run)

    def purge(
        self,
        *,
        ledger_before: float,
        purchases_before: float,
        dead_letters_before: float,
        codes_before: float | None = None,
        facts_before: float | None = None,
    ) -> PurgeReport:
        check_purge(ledger_before, purchases_before, dead_letters_before, codes_before, facts_before)
        marks = ", ".join("?" * len(PURGEABLE))

        def run(conn: sqlite3.Connection) -> PurgeReport:
            entries = conn.execute(
                f"DELETE FROM ledger WHERE state IN ({marks}) AND claimed_at < ?", (*PURGEABLE, ledger_before)
            ).rowcount
            purchases = conn.execute("DELETE FROM purchases WHERE at < ?", (purchases_before,)).rowcount
            letters = conn.execute("DELETE FROM dead_letters WHERE at < ?", (dead_letters_before,)).rowcount
            codes = (
                0
                if codes_before is None
                else conn.execute("DELETE FROM codes WHERE expires_at < ?", (codes_before,)).rowcount
            )
            facts = 0
            if facts_before is not None:
                facts = conn.execute("DELETE FROM assignments WHERE assigned_at < ?", (facts_before,)).rowcount
                for table in ("conversions", "outcomes", "visits"):
                    facts += conn.execute(f"DELETE FROM {table} WHERE at < ?", (facts_before,)).rowcount
            return PurgeReport(
                ledger_entries=entries, purchases=purchases, dead_letters=letters, codes=codes, facts=facts
            )

        return self._write("purge", run)

    # -- facts for analytics --------------------------------------------------------------------------------

    def record_facts(self, facts: Sequence[Fact]) -> int:
        rows: dict[str, list[tuple[Any, ...]]] = {"assignments": [], "conversions": [], "outcomes": [], "visits": []}
        for fact in facts:
            check_fact(fact)
            if isinstance(fact, Assignment):
                rows["assignments"].append((
                    fact.cart_key, fact.flow, fact.group, fact.scope, fact.contact_key, fact.assigned_at, fact.value,
                    fact.currency, _json.encode(fact.variants).decode(), fact.score, fact.reason, fact.trigger,
                ))  # fmt: skip
            elif isinstance(fact, Conversion):
                rows["conversions"].append((
                    fact.cart_key, fact.at, fact.contact_key, int(fact.own), fact.value, fact.currency,
                    fact.transaction_id,
                ))  # fmt: skip
            elif isinstance(fact, MessageOutcome):
                rows["outcomes"].append(tuple(getattr(fact, name) for name in _OUTCOME_FIELDS))
            else:
                rows["visits"].append((fact.cart_key, fact.at))
        columns = {
            "assignments": _ASSIGNMENT_COLUMNS, "conversions": _CONVERSION_COLUMNS, "outcomes": _OUTCOME_COLUMNS,
            "visits": "cart_key, at",
        }  # fmt: skip

        def run(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            for table, values in rows.items():
                if values:
                    marks = ", ".join("?" * len(values[0]))
                    conn.executemany(f"INSERT OR IGNORE INTO {table} ({columns[table]}) VALUES ({marks})", values)
            return conn.total_changes - before

        return self._write("record_facts", run) if facts else 0

    def assignments(self, *, since: float | None = None, until: float | None = None) -> list[Assignment]:
        rows = self._window("assignments", _ASSIGNMENT_COLUMNS, "assigned_at", "cart_key, flow", since, until)
        return [_assignment(row) for row in rows]

    def conversions(self, *, since: float | None = None, until: float | None = None) -> list[Conversion]:
        rows = self._window("conversions", _CONVERSION_COLUMNS, "at", "cart_key", since, until)
        return [_conversion(row) for row in rows]

    def outcomes(self, *, since: float | None = None, until: float | None = None) -> list[MessageOutcome]:
        rows = self._window("outcomes", _OUTCOME_COLUMNS, "at", "key, outcome", since, until)
        return [MessageOutcome(**dict(zip(_OUTCOME_FIELDS, row, strict=True))) for row in rows]

    def visits(self, *, since: float | None = None, until: float | None = None) -> list[LinkVisit]:
        rows = self._window("visits", "cart_key, at", "at", "cart_key", since, until)
        return [LinkVisit(cart_key=cart_key, at=at) for cart_key, at in rows]

    def _window(
        self, table: str, columns: str, time: str, tie: str, since: float | None, until: float | None
    ) -> list[tuple[Any, ...]]:
        low = -math.inf if since is None else since
        high = math.inf if until is None else until
        return self._read(
            table,
            lambda conn: conn.execute(
                f"SELECT {columns} FROM {table} WHERE {time} >= ? AND {time} < ? ORDER BY {time}, {tie}", (low, high)
            ).fetchall(),
        )

    # -- codes ----------------------------------------------------------------------------------------------

    def issue_code(self, code: CodeRecord, *, limits: Sequence[CodeLimit] = ()) -> IssueAnswer:
        check_code(code)
        check_limits(limits)

        def run(conn: sqlite3.Connection) -> IssueAnswer:
            # One transaction under the file's write lock: no other process can issue between count and insert.
            if conn.execute("SELECT 1 FROM codes WHERE hash = ?", (code.code_hash,)).fetchone() is not None:
                return "duplicate"
            for limit in limits:
                key = limit_key(code, limit.by)
                if key is None:
                    continue
                column = _LIMIT_COLUMNS[limit.by]
                (issued,) = conn.execute(
                    f"SELECT count(*) FROM codes WHERE {column} = ? AND issued_at >= ?", (key, limit.since)
                ).fetchone()
                if issued >= limit.most:
                    return LIMIT_ANSWERS[limit.by]
            conn.execute(
                f"INSERT INTO codes ({_CODE_COLUMNS}) VALUES ({', '.join('?' * 14)})",
                (
                    code.code_hash, code.cart_key, code.contact_key, code.kind, code.issued_at, code.expires_at,
                    code.percent, code.amount, code.currency, code.min_value, code.domain, code.device, None, None,
                ),
            )  # fmt: skip
            return "issued"

        return self._write("issue_code", run)

    def redeem_code(
        self, code_hash: str, *, contact_key: str, cart_value: int, currency: str | None, order_id: str, now: float
    ) -> RedeemResult:
        check_redeem(code_hash, contact_key, cart_value, order_id)

        def run(conn: sqlite3.Connection) -> RedeemResult:
            # Read and mark in one transaction under the write lock: of two orders racing for one code, the
            # second reads it redeemed.
            row = conn.execute(f"SELECT {_CODE_COLUMNS} FROM codes WHERE hash = ?", (code_hash,)).fetchone()
            code = None if row is None else _code_record(row)
            outcome = judge_redemption(
                code, contact_key=contact_key, cart_value=cart_value, currency=currency, order_id=order_id, now=now
            )
            if code is not None and outcome == "valid" and code.redeemed_order is None:
                conn.execute(
                    "UPDATE codes SET redeemed_at = ?, redeemed_order = ? WHERE hash = ?", (now, order_id, code_hash)
                )
                code = msgspec.structs.replace(code, redeemed_at=now, redeemed_order=order_id)
            return RedeemResult(outcome=outcome, code=code)

        return self._write("redeem_code", run)

    def count_codes(
        self,
        *,
        since: float,
        contact_key: str | None = None,
        domain: str | None = None,
        device: str | None = None,
    ) -> int:
        check_count(contact_key, domain, device, since)
        wanted = [(column, value) for column, value in (("contact_key", contact_key), ("domain", domain),
                                                         ("device", device)) if value is not None]  # fmt: skip
        where = " AND ".join(f"{column} = ?" for column, _ in wanted)

        def run(conn: sqlite3.Connection) -> int:
            (count,) = conn.execute(
                f"SELECT count(*) FROM codes WHERE {where} AND issued_at >= ?", (*(v for _, v in wanted), since)
            ).fetchone()
            return int(count)

        return self._read("count_codes", run)

    def record_attempt(self, client_key: str, *, now: float, window: float) -> int:
        check_attempt("record_attempt", client_key, now, window)
        cutoff = now - window

        def run(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM code_attempts WHERE at <= ?", (cutoff,))
            conn.execute("INSERT INTO code_attempts (client, at) VALUES (?, ?)", (client_key, now))
            (count,) = conn.execute(
                "SELECT count(*) FROM code_attempts WHERE client = ? AND at > ? AND at <= ?", (client_key, cutoff, now)
            ).fetchone()
            return int(count)

        return self._write("record_attempt", run)

    def count_attempts(self, client_key: str, *, now: float, window: float) -> int:
        check_attempt("count_attempts", client_key, now, window)

        def run(conn: sqlite3.Connection) -> int:
            (count,) = conn.execute(
                "SELECT count(*) FROM code_attempts WHERE client = ? AND at > ? AND at <= ?",
                (client_key, now - window, now),
            ).fetchone()
            return int(count)

        return self._read("count_attempts", run)

    # -- housekeeping ---------------------------------------------------------------------------------------

    def check(self) -> list[str]:
        """``PRAGMA integrity_check`` and ``foreign_key_check``, then the schema's version and tables.

        Reads the whole file: seconds for a file of gigabytes. Empty when all is well.
        """
        return self._read("check", lambda conn: _schema.problems(conn, str(self.path)))

    def statistics(self) -> StoreStatistics:
        with self._lock:
            return StoreStatistics(
                operations=self._operations,
                failed=self._failed,
                commits=self._commits,
                largest_group=self._largest_group,
            )

    def close(self) -> None:
        """Finish the writes already queued and close every connection. Idempotent.

        In a forked child (see the module docstring) it only marks the store closed: the connections are the
        parent's and are left alone.
        """
        if os.getpid() != self._pid:
            self._abandon()
            self._closed = True
            return
        if self._scrub_due and not self._closed:
            # A forget() that no trim_events() followed: its rows' old images must not outlive the store.
            self._scrub_after_forget()
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _OPEN_STORES.discard(self)
        with self._commit_lock:
            while self._queue:  # operations queued before close() are still committed
                self._commit_queued()
            self._conn.close()
        with self._lock:
            readers = list(self._readers)
        for reader in readers:
            reader.finalizer()

    def _abandon(self) -> None:
        # In a forked child: keep the parent's connections referenced and never close them here.
        if self._conn not in _ABANDONED_IN_CHILD:
            _ABANDONED_IN_CHILD.append(self._conn)
        for reader in list(self._readers):
            if reader.finalizer.detach() is not None:
                _ABANDONED_IN_CHILD.append(reader.conn)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"SQLiteStore({str(self.path)!r}, synchronous={self.synchronous!r}, {state})"


def _zero_free_pages(conn: sqlite3.Connection) -> int:
    """Overwrite every free page with zeros, once per file; return how many were overwritten.

    SQLite cannot be asked to zero its free list, but it hands free pages out first: a zero blob as large as
    the free list takes every free page and writes zeros into it, and deleting the blob frees them again,
    zeroed (secure_delete is on). Marked in meta, because with secure_delete on from then, pages are zeroed as
    they are freed and doing it again would only rewrite zeros.
    """
    if conn.execute("SELECT 1 FROM meta WHERE key = 'free_pages_zeroed'").fetchone() is not None:
        return 0
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    left = free * size
    chunk = 0
    while left > 0:
        length = min(left, _SCRUB_CHUNK)
        conn.execute("INSERT INTO meta (key, value) VALUES (?, zeroblob(?))", (f"scrub-{chunk}", length))
        left -= length
        chunk += 1
    conn.execute("DELETE FROM meta WHERE key LIKE 'scrub-%'")
    conn.execute("INSERT INTO meta (key, value) VALUES ('free_pages_zeroed', 1)")
    return free


def _abandon_stores_after_fork() -> None:
    for store in list(_OPEN_STORES):
        store._abandon()


if hasattr(os, "register_at_fork"):  # a hook that only touches recoverkit's own stores, as sentry-sdk's does
    os.register_at_fork(after_in_child=_abandon_stores_after_fork)


# -- helpers of the operations ---------------------------------------------------------------------------------


def _claim(conn: sqlite3.Connection, r: ClaimRequest, hashed: str) -> Claim:
    lease = conn.execute("SELECT owner, expires_at FROM leases WHERE name = ?", (PIPELINE_LEASE,)).fetchone()
    if lease is None or lease[0] != r.owner or lease[1] <= r.now:
        return "not_owner"
    if conn.execute("SELECT 1 FROM ledger WHERE key = ?", (r.key,)).fetchone() is not None:
        return "duplicate"
    if hashed and conn.execute("SELECT 1 FROM suppression WHERE hash = ?", (hashed,)).fetchone() is not None:
        return "suppressed"
    bought = conn.execute(
        "SELECT 1 FROM purchases WHERE ((kind = 'cart' AND key = ?) OR (kind = 'contact' AND key = ?)) "
        "AND at >= ? LIMIT 1",
        (r.cart_key, r.contact_key, r.started_at),
    ).fetchone()
    if bought is not None:
        return "purchased"
    conn.execute(
        "INSERT INTO ledger (key, cart_key, contact_key, channel, state, owner, started_at, claimed_at) "
        "VALUES (?, ?, ?, ?, 'sending', ?, ?, ?)",
        (r.key, r.cart_key, r.contact_key, r.channel, r.owner, r.started_at, r.now if r.at is None else r.at),
    )
    return "claimed"


def _rollback(conn: sqlite3.Connection) -> None:
    # After a failed COMMIT or ROLLBACK TO, SQLite may or may not have ended the transaction itself.
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _ledger_state(conn: sqlite3.Connection, key: str) -> str:
    row = conn.execute("SELECT state FROM ledger WHERE key = ?", (key,)).fetchone()
    if row is None:
        raise missing_entry(key)
    return str(row[0])


_ASSIGNMENT_COLUMNS: Final = (
    "cart_key, flow, grp, scope, contact_key, assigned_at, value, currency, variants, score, reason, trigger_"
)
_CONVERSION_COLUMNS: Final = "cart_key, at, contact_key, own, value, currency, transaction_id"
_OUTCOME_FIELDS: Final = (
    "key", "cart_key", "contact_key", "flow", "step", "outcome", "at", "channel", "variant", "offer", "offer_kind"
)  # fmt: skip
_OUTCOME_COLUMNS: Final = ", ".join(_OUTCOME_FIELDS)
_json: Final = msgspec.json.Encoder()
_variants: Final = msgspec.json.Decoder(dict[str, str])


def _assignment(row: tuple[Any, ...]) -> Assignment:
    cart_key, flow, group, scope, contact_key, at, value, currency, variants, score, reason, trigger = row
    return Assignment(
        cart_key=cart_key, flow=flow, group=group, scope=scope, contact_key=contact_key, assigned_at=at, value=value,
        currency=currency, variants=_variants.decode(variants), score=score, reason=reason, trigger=trigger,
    )  # fmt: skip


def _conversion(row: tuple[Any, ...]) -> Conversion:
    cart_key, at, contact_key, own, value, currency, transaction_id = row
    return Conversion(
        cart_key=cart_key, at=at, contact_key=contact_key, own=bool(own), value=value, currency=currency,
        transaction_id=transaction_id,
    )  # fmt: skip


def _code_record(row: tuple[Any, ...]) -> CodeRecord:
    (code_hash, cart_key, contact_key, kind, issued_at, expires_at, percent, amount, currency, min_value, domain,
     device, redeemed_at, redeemed_order) = row  # fmt: skip
    return CodeRecord(
        code_hash=code_hash, cart_key=cart_key, contact_key=contact_key, kind=kind, issued_at=issued_at,
        expires_at=expires_at, percent=percent, amount=amount, currency=currency, min_value=min_value, domain=domain,
        device=device, redeemed_at=redeemed_at, redeemed_order=redeemed_order,
    )  # fmt: skip


def _ledger_entry(row: tuple[Any, ...]) -> LedgerEntry:
    key, cart_key, contact_key, channel, state, owner, started_at, claimed_at, finished_at, error = row
    return LedgerEntry(
        key=key,
        cart_key=cart_key,
        contact_key=contact_key,
        channel=channel,
        state=state,
        owner=owner,
        started_at=started_at,
        claimed_at=claimed_at,
        finished_at=finished_at,
        error=error,
    )
