"""The SQLite file a :class:`~recoverkit.store.SQLiteStore` keeps its tables in: how it opens, writes (group
commit), reads (a connection per thread), scrubs erased rows and survives a fork; see :mod:`recoverkit.store.sqlite`.
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
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Generic, Literal, Self, TypeVar, get_args

import msgspec

from .._files import PRIVATE_MODE, open_private
from .._log import get_logger
from ..errors import ConfigError, StoreError
from . import _schema
from ._lifecycle import StoreStatistics
from ._partition_args import no_single_sequence
from ._partitioned import check_partitions
from ._privacy import contact_hash
from ._sqlite_schema import count_partitions

__all__ = ["FILE_MODE", "GROUP_LIMIT", "SQLiteFile", "Scrub", "Synchronous"]

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
#: Connections a forked child found itself holding: kept referenced so that they are not closed there either
#: (closing runs SQLite's locking and WAL code on state copied from the parent).
_ABANDONED_IN_CHILD: list[sqlite3.Connection] = []
#: Every store not yet closed, so that a fork can abandon their connections in the child at once.
_OPEN_STORES: weakref.WeakSet[SQLiteFile] = weakref.WeakSet()


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


class SQLiteFile:
    """The file under a :class:`~recoverkit.store.SQLiteStore`: opening it, the group-committing writer,
    the per-thread readers, scrubbing, statistics and closing; the per-concern parts build on it.

    The parts are mixins of this class, not objects it delegates to, because they share everything here: one
    write connection and its commit queue (a ``claim`` and a ``forget`` may commit in the same group), one
    salt, one fork guard; a delegated object would need a reference back to all of it. Each part reaches only
    :meth:`_write`, :meth:`_read`, :meth:`_hash` and the scrub flag.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "normal",
        busy_timeout: float = 5.0,
        partitions: int | None = None,
    ) -> None:
        if synchronous not in get_args(Synchronous):
            raise ConfigError(f"SQLiteStore: expected `synchronous` to be 'normal' or 'full', got {synchronous!r}")
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float) or not (
            0 <= busy_timeout < math.inf
        ):
            raise ConfigError(f"SQLiteStore: expected `busy_timeout` to be seconds >= 0, got {busy_timeout!r}")
        wanted = None if partitions is None else check_partitions(partitions)
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
        self._conn, self._salt, self._partitions = self._open_writer(wanted)
        _OPEN_STORES.add(self)

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

    def _switch_to_wal(self, conn: sqlite3.Connection) -> str:
        """Put the file in WAL mode (persistent in the file); the journal mode it is in afterwards.

        Switching a new file needs its exclusive lock. When several processes open a new file at once, SQLite
        can answer "database is locked" at once, without waiting (its busy handler is not called where waiting
        could deadlock), so the switch is tried again until ``busy_timeout`` has passed.
        """
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(0.005)

    def _open_writer(self, partitions: int | None) -> tuple[sqlite3.Connection, bytes, int]:
        conn = self._connect()
        try:
            mode = self._switch_to_wal(conn)
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
            _schema.migrate(conn, str(self.path), partitions=partitions)
            salt = _schema.read_salt(conn, str(self.path))  # fixed for the file's life: read it once
            count = count_partitions(conn)  # likewise
            self._probe_writable(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise self._translate("open", exc) from exc
        except BaseException:
            conn.close()
            raise
        return conn, salt, count

    @property
    def partitions(self) -> int:
        """How many partitions the file's journal has (fixed when the file was created)."""
        return self._partitions

    def _one_sequence(self, method: str) -> None:
        """Refuse a one-sequence journal or checkpoint method on a store of several partitions."""
        if self._partitions != 1:
            raise no_single_sequence(method, self._partitions)

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

    def _usable(self) -> None:
        pid = os.getpid()
        if pid != self._pid:
            raise StoreError(
                f"SQLiteStore({self.path}) was opened in process {self._pid} and used in process {pid}: a SQLite "
                "connection must not cross a fork; open the store after forking"
            )
        if self._closed:
            raise StoreError(f"SQLiteStore({self.path}) was used after close()")

    def _hash(self, contact_key: str) -> str:
        """:meth:`hash_contact` without its argument check, for the parts that hash a key they checked."""
        self._usable()
        return contact_hash(self._salt, contact_key)

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


def _rollback(conn: sqlite3.Connection) -> None:
    # After a failed COMMIT or ROLLBACK TO, SQLite may or may not have ended the transaction itself.
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
