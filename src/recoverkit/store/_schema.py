"""The SQLite schema of a recoverkit store, versioned; the migrations that bring a file up to date; checks.

A store file says what it is in its header: ``PRAGMA application_id`` is :data:`APPLICATION_ID` and
``PRAGMA user_version`` the number of migrations applied to it. :data:`MIGRATIONS` is append-only: migration
``n`` (1-based) takes a file from version ``n - 1`` to ``n``. Never edit a released migration; add one. A
migration is a SQL script, or a function of the connection when it needs a value SQL cannot make (migration
2 draws the store's salt from ``os.urandom``). :func:`migrate` applies the missing ones in one transaction
at open, so a file is never half migrated, and refuses a file written by a newer recoverkit rather than
guess what its tables mean.

:func:`problems` is ``SQLiteStore.check()``; :func:`check_database` and :func:`describe_database` read a file
without opening a store on it, and without changing it (``recoverkit db check`` and ``db info``).
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, TypeAlias, TypeVar

import msgspec

from ..errors import StoreError
from ._onsite_sql import SQLITE_ONSITE
from ._sqlite_audit_schema import V_AUDIT, audit_file_problems
from ._state import SQLITE_STATES
from ._sqlite_schema import V5, partition_problems, seed_partitions, set_new_partitions, want_partitions
from .base import SALT_BYTES

__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "TABLES",
    "Lease",
    "Migration",
    "StoreInfo",
    "check_database",
    "check_header",
    "describe_database",
    "last_seq",
    "migrate",
    "os_reason",
    "problems",
    "read_salt",
    "split_statements",
    "write_problems",
]

T = TypeVar("T")

#: "RcKt": marks a SQLite file as a recoverkit store (``PRAGMA application_id``).
APPLICATION_ID: Final = 0x52634B74

_V1 = """
-- Accepted events. AUTOINCREMENT so that a seq is never handed out twice, even after the journal is trimmed
-- empty: a checkpoint's position must keep meaning the same events.
CREATE TABLE journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    data BLOB NOT NULL,
    accepted_at REAL NOT NULL
);

-- At most one row: the latest checkpoint.
CREATE TABLE checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL CHECK (position >= 0),
    state BLOB NOT NULL,
    saved_at REAL NOT NULL
);

-- The latest purchase time per cart (kind 'cart') and per contact (kind 'contact').
CREATE TABLE purchases (
    kind TEXT NOT NULL CHECK (kind IN ('cart', 'contact')),
    key TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;

-- One row per idempotency key; rowid order is claim order.
CREATE TABLE ledger (
    key TEXT PRIMARY KEY,
    cart_key TEXT NOT NULL,
    contact_key TEXT NOT NULL,
    channel TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('sending', 'sent', 'failed', 'dead', 'cancelled', 'unknown')),
    owner TEXT NOT NULL,
    started_at REAL NOT NULL,
    claimed_at REAL NOT NULL,
    finished_at REAL,
    error TEXT
);
CREATE INDEX ledger_by_state ON ledger (state, owner);

CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;

-- rowid order is the order letters were added (a replaced letter is deleted and inserted again).
CREATE TABLE dead_letters (
    key TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    permanent INTEGER NOT NULL CHECK (permanent IN (0, 1)),
    at REAL NOT NULL,
    resent INTEGER NOT NULL DEFAULT 0 CHECK (resent IN (0, 1))
);
"""

_V2 = """
-- Values of the whole store. 'salt': the secret key of hash_contact(), written once by this migration.
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value BLOB
) WITHOUT ROWID;

-- Contacts who must not be written to again, by the keyed hash of their contact key (never the key itself:
-- a forgotten contact must not be readable here). The first reason is kept, except that 'forgotten' wins.
CREATE TABLE suppression (
    hash TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    at REAL NOT NULL
) WITHOUT ROWID;

-- Whom a dead letter was for, so that forget() and export() find it; '' for letters kept before.
ALTER TABLE dead_letters ADD COLUMN contact_key TEXT NOT NULL DEFAULT '';
CREATE INDEX dead_letters_by_contact ON dead_letters (contact_key);
CREATE INDEX ledger_by_contact ON ledger (contact_key);
"""

def _v2(conn: sqlite3.Connection) -> None:
    for statement in split_statements(_V2):
        conn.execute(statement)
    # os.urandom, not SQLite's randomblob(): SQLite does not promise that its PRNG is fit for secrets.
    conn.execute("INSERT INTO meta (key, value) VALUES ('salt', ?)", (os.urandom(SALT_BYTES),))


_V3 = """
-- Discount codes, by a keyed hash of the code, never the code: its key is kept outside this file, so a copy of
-- the file holds no code anyone could redeem. A code is redeemed once: redeemed_at and redeemed_order are set
-- together, by the one redemption it allows. domain and device are keyed hashes the abuse limits count by.
CREATE TABLE codes (
    hash TEXT PRIMARY KEY,
    cart_key TEXT NOT NULL,
    contact_key TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('discount', 'free_shipping')),
    percent INTEGER CHECK (percent BETWEEN 1 AND 100),
    amount INTEGER CHECK (amount > 0),
    currency TEXT,
    min_value INTEGER NOT NULL DEFAULT 0 CHECK (min_value >= 0),
    domain TEXT,
    device TEXT,
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    redeemed_at REAL,
    redeemed_order TEXT,
    CHECK ((redeemed_at IS NULL) = (redeemed_order IS NULL))
) WITHOUT ROWID;
-- The abuse limits count a contact's, a domain's, a device's codes issued since a time.
CREATE INDEX codes_by_contact ON codes (contact_key, issued_at);
CREATE INDEX codes_by_domain ON codes (domain, issued_at);
CREATE INDEX codes_by_device ON codes (device, issued_at);
CREATE INDEX codes_by_expiry ON codes (expires_at);

-- Failed redemptions per client (a keyed hash of what the shop passes, such as an IP address), for the rate
-- limit on guessing codes. Rows older than the window are deleted as new ones come.
CREATE TABLE code_attempts (
    client TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX code_attempts_by_client ON code_attempts (client, at);
CREATE INDEX code_attempts_by_at ON code_attempts (at);
"""

_V4 = """
-- Facts for analytics (Store.record_facts); the first fact of each natural key is kept, so the engine can write
-- them again after a restart. contact_key is replaced by its keyed hash when the contact is forgotten.
-- The experiment group of each abandoned cart per flow: treatment or holdout; variants is a JSON object of step
-- index to A/B variant name.
CREATE TABLE assignments (
    cart_key TEXT NOT NULL,
    flow TEXT NOT NULL,
    grp TEXT NOT NULL CHECK (grp IN ('treatment', 'holdout')),
    scope TEXT CHECK (scope IN ('global', 'flow')),
    contact_key TEXT NOT NULL,
    assigned_at REAL NOT NULL,
    value INTEGER NOT NULL,
    currency TEXT,
    variants TEXT NOT NULL DEFAULT '{}',
    score REAL NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    trigger_ TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (cart_key, flow)
) WITHOUT ROWID;
CREATE INDEX assignments_by_time ON assignments (assigned_at);
CREATE INDEX assignments_by_contact ON assignments (contact_key);

-- Carts that converted: in their own session (own = 1, with the order's value), or by their customer elsewhere.
CREATE TABLE conversions (
    cart_key TEXT NOT NULL,
    at REAL NOT NULL,
    contact_key TEXT NOT NULL,
    own INTEGER NOT NULL CHECK (own IN (0, 1)),
    value INTEGER,
    currency TEXT,
    transaction_id TEXT,
    PRIMARY KEY (cart_key, at)
) WITHOUT ROWID;
CREATE INDEX conversions_by_time ON conversions (at);
CREATE INDEX conversions_by_contact ON conversions (contact_key);

-- How each step of a flow ended for a cart (sent, dead, cancelled_*, capped, skipped_*, ...), by message key and
-- outcome: a step cancelled because the shopper came back is routed again if the cart is abandoned again.
CREATE TABLE outcomes (
    key TEXT NOT NULL,
    cart_key TEXT NOT NULL,
    contact_key TEXT NOT NULL,
    flow TEXT NOT NULL,
    step INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    at REAL NOT NULL,
    channel TEXT,
    variant TEXT,
    offer TEXT,
    offer_kind TEXT,
    PRIMARY KEY (key, outcome)
) WITHOUT ROWID;
CREATE INDEX outcomes_by_time ON outcomes (at);
CREATE INDEX outcomes_by_contact ON outcomes (contact_key);

-- Cart-restore links followed.
CREATE TABLE visits (
    cart_key TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (cart_key, at)
) WITHOUT ROWID;
CREATE INDEX visits_by_time ON visits (at);
"""


def _v5(conn: sqlite3.Connection) -> None:
    # Partitions (see _sqlite_schema): the journal so far becomes partition 0's, its head the last seq handed out.
    head = last_seq(conn)
    for statement in split_statements(V5):
        conn.execute(statement)
    seed_partitions(conn, head)


#: One migration: a SQL script, or a function run on the connection inside the migration's transaction.
Migration: TypeAlias = str | Callable[[sqlite3.Connection], None]

#: The migrations in order; the schema version of a file is how many of them it has had.
MIGRATIONS: Final[tuple[Migration, ...]] = (_V1, _v2, _V3, _V4, _v5, V_AUDIT, SQLITE_ONSITE, SQLITE_STATES)
#: The version this recoverkit writes and reads.
SCHEMA_VERSION: Final = len(MIGRATIONS)
#: The tables of the current schema, for checks and ``recoverkit db info``.
TABLES: Final = (
    "assignments", "audit", "audit_chain", "checkpoint", "code_attempts", "codes", "conversions", "dead_letters",
    "journal", "journal_heads", "leases", "ledger", "meta", "outcomes", "partition_checkpoints", "partition_leases",
    "onsite", "purchases", "states", "suppression", "visits",
)  # fmt: skip


def split_statements(script: str) -> list[str]:
    """The statements of ``script``, each complete, in order.

    ``executescript`` would do this, but it commits any open transaction first, and a migration must run
    inside the transaction that also sets the version.
    """
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        if not pending and (not line.strip() or line.lstrip().startswith("--")):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"migration script ends in an incomplete statement: {pending.strip()[:80]!r}")
    return statements


def _header(conn: sqlite3.Connection) -> tuple[int, int]:
    application_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    return int(application_id), int(version)


def _user_tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    return [str(row[0]) for row in rows]


def check_header(path: str, application_id: int, version: int, tables: Sequence[str], supported: int) -> None:
    """Raise :class:`StoreError` unless a file with this header can be used (possibly after migrating it)."""
    if application_id not in (0, APPLICATION_ID):
        raise StoreError(
            f"{path} is a SQLite database of another application (application_id {application_id:#x}); "
            f"expected a recoverkit store (application_id {APPLICATION_ID:#x}) or a path for a new one"
        )
    if version > supported:
        raise StoreError(
            f"{path} has schema version {version}, written by a newer recoverkit; this one supports schema "
            f"versions up to {supported}: upgrade recoverkit on every process that shares the file"
        )
    if application_id == 0 and (version or tables):
        # recoverkit sets application_id in the transaction that creates its tables, so a marked-less file
        # with content is someone else's.
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "") or "none"
        raise StoreError(
            f"{path} is a SQLite database but not a recoverkit store (no recoverkit application_id; "
            f"user_version {version}, tables: {shown}); expected a recoverkit store or a path for a new one"
        )


def migrate(
    conn: sqlite3.Connection, path: str, migrations: Sequence[Migration] = MIGRATIONS, *, partitions: int | None = None
) -> int:
    """Bring the file open on ``conn`` (in autocommit mode) to ``len(migrations)``; return the version found.

    Runs under ``BEGIN IMMEDIATE``, so that processes opening a new file together migrate it once: the
    others wait for the write lock, then find it done. A failing migration rolls back entirely.

    ``partitions`` (the store's, with :data:`MIGRATIONS`): a file whose tables this call creates gets that many,
    in the same transaction; a file that has another number raises :class:`StoreError` (nothing migrated).
    """
    application_id, version = _header(conn)
    if application_id == APPLICATION_ID and version == len(migrations):
        if partitions is not None:
            want_partitions(conn, path, partitions)
        return version  # the usual case: no write lock needed
    conn.execute("BEGIN IMMEDIATE")
    try:
        application_id, version = _header(conn)  # another process may have migrated meanwhile
        check_header(path, application_id, version, _user_tables(conn), len(migrations))
        for number in range(version, len(migrations)):
            step = migrations[number]
            if isinstance(step, str):
                for statement in split_statements(step):
                    conn.execute(statement)
            else:
                step(conn)
        if partitions is not None and version == 0:
            set_new_partitions(conn, partitions)  # a new file: its number is set once, here
        elif partitions is not None:
            want_partitions(conn, path, partitions)
        # PRAGMAs take no parameters; both values are integers of ours.
        conn.execute(f"PRAGMA user_version = {len(migrations):d}")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID:d}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return version


def _salt_problem(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'salt'").fetchone()
    if row is None:
        return "table meta has no 'salt' row; expected the store's secret salt"
    if not isinstance(row[0], bytes) or len(row[0]) != SALT_BYTES:
        shown = f"{len(row[0])} bytes" if isinstance(row[0], bytes) else f"a {type(row[0]).__name__}"
        return f"the 'salt' in table meta is {shown}; expected {SALT_BYTES} bytes"
    return None


def read_salt(conn: sqlite3.Connection, path: str) -> bytes:
    """The salt of the (migrated) store file open on ``conn``; :class:`StoreError` if it is missing or damaged.

    Never made up again: with a new salt, the hashes of suppressed contacts would stop matching and a forgotten
    contact would be written to again.
    """
    problem = _salt_problem(conn)
    if problem is not None:
        raise StoreError(f"{path}: {problem}; the suppressions kept cannot be matched without it")
    return bytes(conn.execute("SELECT value FROM meta WHERE key = 'salt'").fetchone()[0])


def last_seq(conn: sqlite3.Connection) -> int:
    """The highest journal seq ever handed out in the file open on ``conn`` (0 if none), trimmed or not: on a
    store of several partitions, how many events were ever appended (the sum of the partitions' heads)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'journal_heads'").fetchone() is not None:
        return int(conn.execute("SELECT coalesce(sum(last_position), 0) FROM journal_heads").fetchone()[0])
    # Before partitions: sqlite_sequence keeps the highest seq AUTOINCREMENT ever handed out.
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'journal'").fetchone()
    return 0 if row is None else int(row[0])


# -- reading a file without opening a store (recoverkit db check / info) -----------------------------------------


class Lease(msgspec.Struct, frozen=True, kw_only=True):
    """A lease as stored: who holds ``name`` and until when (it may have expired since)."""

    name: str
    owner: str
    expires_at: float


class StoreInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`describe_database` found in a store file (``recoverkit db info``)."""

    path: str
    schema_version: int
    supported_version: int
    rows: dict[str, int]
    leases: list[Lease]
    last_seq: int
    checkpoint_position: int | None
    #: The journal's partitions and each one's head (the highest position handed out), by partition.
    partitions: int = 1
    heads: list[int] = msgspec.field(default_factory=list)


def problems(conn: sqlite3.Connection, path: str) -> list[str]:
    """What is wrong with the store file open on ``conn``: integrity, foreign keys, header, tables."""
    found = [
        f"integrity_check: {row[0]}" for row in conn.execute("PRAGMA integrity_check").fetchall() if row[0] != "ok"
    ]
    found += [
        f"foreign_key_check: row {rowid} of table {table} refers to a missing row of {parent}"
        for table, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check").fetchall()
    ]
    application_id, version = _header(conn)
    tables = _user_tables(conn)
    try:
        check_header(path, application_id, version, tables, SCHEMA_VERSION)
    except StoreError as exc:
        return [*found, str(exc)]
    if version < SCHEMA_VERSION:
        found.append(
            f"schema version {version} is older than {SCHEMA_VERSION}: opening the file with SQLiteStore migrates it"
        )
    else:
        found += [f"table {name} is missing" for name in TABLES if name not in tables]
        if "meta" in tables:
            problem = _salt_problem(conn)
            found += [] if problem is None else [problem]
        if {"journal", "journal_heads", "partition_leases"} <= set(tables):
            found += partition_problems(conn)
        if {"audit", "audit_chain"} <= set(tables):
            found += audit_file_problems(conn)
    return found


def _open_existing(path: str | os.PathLike[str]) -> sqlite3.Connection:
    file = Path(path)
    if not file.is_file():
        raise StoreError(f"{file}: no such file; expected an existing recoverkit store")
    try:
        # mode=rw: never create the file; query_only: never change it (no migration either).
        conn = sqlite3.connect(f"{file.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None)
        conn.execute("PRAGMA query_only = 1")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {file}: {exc}") from exc
    return conn


def _inspect(path: str | os.PathLike[str], run: Callable[[sqlite3.Connection], T]) -> T:
    conn = _open_existing(path)
    try:
        conn.execute("BEGIN")  # one snapshot for every query
        return run(conn)
    except sqlite3.DatabaseError as exc:
        if exc.sqlite_errorcode == sqlite3.SQLITE_NOTADB:
            raise StoreError(f"{path} is not a SQLite database; expected a recoverkit store") from exc
        raise StoreError(f"{path}: {exc}") from exc
    finally:
        conn.close()


def check_database(path: str | os.PathLike[str]) -> list[str]:
    """The problems :meth:`SQLiteStore.check` would report for the file at ``path``, without opening a store,
    and what would keep an engine from writing it (:func:`write_problems`).

    The file is neither created nor migrated nor changed. Raises :class:`~recoverkit.errors.StoreError` when
    it does not exist or is not a SQLite database.
    """
    found = _inspect(path, lambda conn: problems(conn, str(path)))
    return found + write_problems(path)


#: Less free space than this on the store's filesystem is reported: the journal grows with every event.
LOW_SPACE_BYTES: Final = 1024 * 1024


def write_problems(path: str | os.PathLike[str]) -> list[str]:
    """Why this process could not write the store at ``path``, as the operating system says it: the file, its
    ``-wal`` and ``-shm`` files (when they exist), their directory (SQLite creates the ``-wal`` and ``-shm``
    files there), and less than :data:`LOW_SPACE_BYTES` free on the filesystem. Empty when none applies.

    Opens each file for writing and closes it again, writing nothing: safe beside running workers.
    """
    file = Path(path)
    found: list[str] = []
    for candidate in (file, Path(f"{file}-wal"), Path(f"{file}-shm")):
        if candidate is not file and not candidate.exists():
            continue
        try:
            os.close(os.open(candidate, os.O_RDWR))
        except OSError as exc:
            found.append(
                f"{candidate} cannot be written: {os_reason(exc)}; an engine would refuse to start on it; expected "
                "a file this user can write (check its mode, `lsattr` for the immutable flag, the mount)"
            )
    directory = file.resolve().parent
    if not os.access(directory, os.W_OK | os.X_OK):
        found.append(
            f"{directory}: the directory cannot be written, and SQLite creates the store's -wal and -shm files "
            "there; expected a directory this user can write"
        )
    try:
        stat = os.statvfs(directory)
    except OSError:
        return found
    free = stat.f_bavail * stat.f_frsize
    if free < LOW_SPACE_BYTES:
        found.append(
            f"{directory}: only {free:,} bytes free on the filesystem; the journal grows with every event, and "
            "what does not fit is refused (events_overflow); expected at least "
            f"{LOW_SPACE_BYTES:,} bytes free"
        )
    return found


def os_reason(exc: OSError) -> str:
    """``exc`` as an operator reads it: the system's message and the errno's name (``Read-only file system
    (EROFS)``), without the path, which the caller names once."""
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return f"{exc.strerror or exc} ({name})"


def describe_database(path: str | os.PathLike[str]) -> StoreInfo:
    """Schema version, row counts per table, leases, journal position and checkpoint of the store at ``path``.

    Read-only, like :func:`check_database`; a file with another application's or a newer schema raises
    :class:`~recoverkit.errors.StoreError`.
    """

    def run(conn: sqlite3.Connection) -> StoreInfo:
        application_id, version = _header(conn)
        tables = _user_tables(conn)
        check_header(str(path), application_id, version, tables, SCHEMA_VERSION)
        # Table names come from our own list, never from the file, so formatting them in is safe.
        rows: dict[str, int] = {
            name: int(conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0])
            for name in TABLES
            if name in tables
        }
        leases = (
            [
                Lease(name=n, owner=o, expires_at=e)
                for n, o, e in conn.execute("SELECT name, owner, expires_at FROM leases ORDER BY name").fetchall()
            ]
            if "leases" in tables
            else []
        )
        checkpoint = (
            conn.execute("SELECT position FROM checkpoint WHERE id = 1").fetchone() if "checkpoint" in tables else None
        )
        heads = (
            [int(h) for (h,) in conn.execute("SELECT last_position FROM journal_heads ORDER BY part")]
            if "journal_heads" in tables
            else [last_seq(conn)] if "journal" in tables else []
        )
        return StoreInfo(
            path=str(path),
            schema_version=version,
            supported_version=SCHEMA_VERSION,
            rows=rows,
            leases=leases,
            last_seq=last_seq(conn) if "journal" in tables else 0,
            checkpoint_position=None if checkpoint is None else int(checkpoint[0]),
            partitions=max(len(heads), 1),
            heads=heads,
        )

    return _inspect(path, run)
