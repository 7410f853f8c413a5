"""The store's schema in PostgreSQL: versioned migrations that :func:`init` applies, and the checks at open.

A store lives in one PostgreSQL schema (``recoverkit`` unless told otherwise), so it can share a database with
the shop's own tables. Its ``meta`` table records the application, the schema version, the number of journal
partitions (fixed when the store is created: an event's partition is a hash of its session id modulo that
number, so changing it would move sessions between partitions under their owners) and the salt of
:meth:`~recoverkit.store.Store.hash_contact`.

:func:`init` is the only code that changes the schema: every host's processes open the store with
:func:`read_meta`, which refuses a schema that is missing, older than this code (run :func:`init`) or newer
(upgrade recoverkit everywhere first). So a rolling deploy never has two versions migrating at once, and a web
process never runs DDL on the shop's database.
"""

from __future__ import annotations

import os
from typing import Final

import msgspec
import psycopg
from psycopg import sql

from ...errors import ConfigError, StoreError
from .._onsite_sql import POSTGRES_ONSITE
from .._state import POSTGRES_STATES
from .._partitioned import MAX_PARTITIONS
from . import _conninfo
from ._audit_schema import AUDIT_MIGRATION, audit_schema_problems
from ._conninfo import Conn

__all__ = ["MAX_PARTITIONS", "MIGRATIONS", "SCHEMA_VERSION", "SchemaInfo", "init", "read_meta", "schema_problems"]


#: Each migration is one transaction's DDL; a store at version n has had the first n applied.
MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);
    -- The journal: events by partition and position. journal_heads holds each partition's counter, taken (row
    -- locked) by the transaction that appends, so positions are handed out in commit order with no gap.
    CREATE TABLE journal_heads (part integer PRIMARY KEY, last_position bigint NOT NULL DEFAULT 0);
    CREATE TABLE journal (
        part integer NOT NULL, position bigint NOT NULL, data bytea NOT NULL, accepted_at double precision NOT NULL,
        PRIMARY KEY (part, position)
    );
    -- A partition's lease; epoch rises each time another owner takes it, and fences the writes of the old one.
    CREATE TABLE partition_leases (
        part integer PRIMARY KEY, owner text, epoch bigint NOT NULL DEFAULT 0,
        expires_at timestamptz NOT NULL DEFAULT '-infinity'
    );
    CREATE TABLE partition_checkpoints (
        part integer PRIMARY KEY, position bigint NOT NULL, state bytea NOT NULL, saved_at double precision NOT NULL,
        epoch bigint NOT NULL
    );
    -- The one-pipeline checkpoint and named leases of today's Store protocol (times are the caller's).
    CREATE TABLE checkpoint (
        id integer PRIMARY KEY CHECK (id = 1), position bigint NOT NULL, state bytea NOT NULL,
        saved_at double precision NOT NULL
    );
    CREATE TABLE leases (name text PRIMARY KEY, owner text NOT NULL, expires_at double precision NOT NULL);
    CREATE TABLE purchases (
        kind text NOT NULL, key text NOT NULL, at double precision NOT NULL, PRIMARY KEY (kind, key)
    );
    CREATE TABLE ledger (
        id bigserial UNIQUE, key text PRIMARY KEY, cart_key text NOT NULL, contact_key text NOT NULL,
        channel text NOT NULL, state text NOT NULL, owner text NOT NULL, started_at double precision NOT NULL,
        claimed_at double precision NOT NULL, finished_at double precision, error text,
        part integer  -- the partition whose owner claimed it (claim_fenced); NULL under the pipeline lease
    );
    CREATE INDEX ledger_contact ON ledger (contact_key);
    CREATE INDEX ledger_state ON ledger (state);
    CREATE INDEX ledger_sending ON ledger (part) WHERE state = 'sending';
    CREATE TABLE dead_letters (
        id bigserial UNIQUE, key text PRIMARY KEY, data bytea NOT NULL, error text NOT NULL, attempts integer NOT NULL,
        permanent boolean NOT NULL, at double precision NOT NULL, contact_key text NOT NULL DEFAULT '',
        resent boolean NOT NULL DEFAULT false
    );
    CREATE INDEX dead_letters_contact ON dead_letters (contact_key);
    CREATE TABLE suppression (hash text PRIMARY KEY, reason text NOT NULL, at double precision NOT NULL);
    CREATE TABLE codes (
        hash text PRIMARY KEY, cart_key text NOT NULL, contact_key text NOT NULL, kind text NOT NULL,
        issued_at double precision NOT NULL, expires_at double precision NOT NULL, percent integer, amount bigint,
        currency text, min_value bigint NOT NULL, domain text, device text, redeemed_at double precision,
        redeemed_order text
    );
    CREATE INDEX codes_contact ON codes (contact_key, issued_at);
    CREATE INDEX codes_domain ON codes (domain, issued_at);
    CREATE INDEX codes_device ON codes (device, issued_at);
    CREATE TABLE code_attempts (id bigserial PRIMARY KEY, client text NOT NULL, at double precision NOT NULL);
    CREATE INDEX code_attempts_client ON code_attempts (client, at);
    CREATE TABLE assignments (
        cart_key text NOT NULL, flow text NOT NULL, grp text NOT NULL, scope text, contact_key text NOT NULL,
        assigned_at double precision NOT NULL, value bigint NOT NULL, currency text, variants text NOT NULL,
        score double precision NOT NULL, reason text NOT NULL, trigger_ text NOT NULL, PRIMARY KEY (cart_key, flow)
    );
    CREATE TABLE conversions (
        cart_key text NOT NULL, at double precision NOT NULL, contact_key text NOT NULL, own boolean NOT NULL,
        value bigint, currency text, transaction_id text, PRIMARY KEY (cart_key, at)
    );
    CREATE TABLE outcomes (
        key text NOT NULL, cart_key text NOT NULL, contact_key text NOT NULL, flow text NOT NULL,
        step integer NOT NULL, outcome text NOT NULL, at double precision NOT NULL, channel text, variant text,
        offer text, offer_kind text, PRIMARY KEY (key, outcome)
    );
    CREATE TABLE visits (cart_key text NOT NULL, at double precision NOT NULL, PRIMARY KEY (cart_key, at));
    CREATE INDEX assignments_contact ON assignments (contact_key);
    CREATE INDEX conversions_contact ON conversions (contact_key);
    CREATE INDEX outcomes_contact ON outcomes (contact_key);
    """,
    AUDIT_MIGRATION,
    POSTGRES_ONSITE,
    POSTGRES_STATES,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)
_APPLICATION: Final = "recoverkit"
#: Tables every version has; check() and the open path look for them.
TABLES: Final = (
    "meta", "journal_heads", "journal", "partition_leases", "partition_checkpoints", "checkpoint", "leases",
    "purchases", "ledger", "dead_letters", "suppression", "codes", "code_attempts", "assignments", "conversions",
    "outcomes", "visits", "audit", "audit_chain", "onsite", "states",
)  # fmt: skip


class SchemaInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a store's ``meta`` table says: its ``version``, ``partitions`` and the ``schema`` it lives in."""

    schema: str
    version: int
    partitions: int


def check_schema_name(schema: str) -> None:
    if not isinstance(schema, str) or not schema or len(schema) > 63 or "\x00" in schema:
        raise ConfigError(
            f"PostgresStore: expected `schema` to be a PostgreSQL schema name (1-63 characters), got {schema!r}"
        )


def init(url: str, *, partitions: int | None = None, schema: str = "recoverkit") -> SchemaInfo:
    """Create the store's schema in the database at ``url``, or bring it to :data:`SCHEMA_VERSION`; idempotent.

    ``partitions`` (1..:data:`MAX_PARTITIONS`; ``None``: 1 for a new store, the number it has for an existing
    one) is fixed when the store is created: ``init`` on an existing store with another number raises
    :class:`~recoverkit.errors.StoreError` (the partition of a session is its hash modulo that number).
    Concurrent calls are safe: each takes a transaction-level advisory lock on the schema's name first, and
    every migration is one transaction. A schema newer than this code is refused with the fix (upgrade
    recoverkit). Bad settings raise :class:`~recoverkit.errors.ConfigError`; a server that cannot be reached or
    refuses, :class:`~recoverkit.errors.StoreError` naming ``url`` without its password.
    """
    check_schema_name(schema)
    if partitions is not None and (
        isinstance(partitions, bool) or not isinstance(partitions, int) or not 1 <= partitions <= MAX_PARTITIONS
    ):
        raise ConfigError(
            f"init: expected `partitions` to be an integer from 1 to {MAX_PARTITIONS}, got {partitions!r}"
        )
    settings = _conninfo.parse(url)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"recoverkit.init.{schema}",))
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
                _set_path(conn, schema)
                version, existing = _version(conn, schema)
                _refuse_newer(version, schema, settings)
                if existing is not None and partitions is not None and existing != partitions:
                    raise StoreError(
                        f"init: the store in schema {schema!r} at {_conninfo.describe(settings)} has {existing} "
                        f"partitions, and their number is fixed when a store is created; got partitions={partitions} "
                        f"(pass {existing}, or create a new store in another schema)"
                    )
                for number in range(version, SCHEMA_VERSION):
                    conn.execute(MIGRATIONS[number])
                    if number == 0:
                        _seed(conn, partitions or 1)
                    conn.execute("UPDATE meta SET value = %s WHERE key = 'schema_version'", (str(number + 1),))
            return SchemaInfo(schema=schema, version=SCHEMA_VERSION, partitions=existing or partitions or 1)
    except psycopg.Error as exc:
        raise _conninfo.connection_error(exc, settings, schema) from None


def _set_path(conn: Conn, schema: str) -> None:
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))


def _seed(conn: Conn, partitions: int) -> None:
    salt = os.urandom(32).hex()
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('application', %s), ('schema_version', '0'), ('partitions', %s), "
        "('salt', %s)",
        (_APPLICATION, str(partitions), salt),
    )
    conn.execute("INSERT INTO journal_heads (part) SELECT generate_series(0, %s - 1)", (partitions,))
    conn.execute("INSERT INTO partition_leases (part) SELECT generate_series(0, %s - 1)", (partitions,))


def _version(conn: Conn, schema: str) -> tuple[int, int | None]:
    """The schema's version and partitions (0 and ``None`` for a schema without recoverkit's meta table)."""
    # pg_catalog, which every user may read: information_schema hides the tables a user has no privilege on,
    # and a store the user may not read must be reported as that, not as missing.
    exists = conn.execute(
        "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = 'meta'",
        (schema,),
    ).fetchone()
    if exists is None:
        return 0, None
    # Named with its schema: without USAGE on it, search_path would skip the schema and "meta" read as missing.
    meta = sql.SQL("SELECT key, value FROM {}.meta").format(sql.Identifier(schema))
    rows: dict[str, str] = dict(conn.execute(meta).fetchall())
    if rows.get("application") != _APPLICATION:
        raise StoreError(
            f"schema {schema!r} has a `meta` table that is not recoverkit's; expected a recoverkit store or a schema "
            "for a new one (pass another `schema`)"
        )
    return int(str(rows["schema_version"])), int(str(rows["partitions"]))


def _refuse_newer(version: int, schema: str, settings: dict[str, str]) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the store in schema {schema!r} at {_conninfo.describe(settings)} is at schema version {version}, newer "
            f"than this recoverkit knows ({SCHEMA_VERSION}): upgrade recoverkit on this host (pip install -U "
            "'recoverkit[postgres]') to the version the other hosts run"
        )


def read_meta(conn: Conn, schema: str, settings: dict[str, str]) -> tuple[int, bytes]:
    """The partitions and salt of the store at the current version in ``schema``; else a StoreError with the fix."""
    version, partitions = _version(conn, schema)
    where = _conninfo.describe(settings)
    if partitions is None:
        raise StoreError(
            f"PostgresStore: no recoverkit store in schema {schema!r} at {where}: create it once with "
            f"`recoverkit db init URL{_schema_option(schema)} [--partitions N]` or "
            "recoverkit.store.postgres.init(url, partitions=...) (check `url` and `schema` if it exists)"
        )
    _refuse_newer(version, schema, settings)
    if version < SCHEMA_VERSION:
        raise StoreError(
            f"PostgresStore: the store in schema {schema!r} at {where} is at schema version {version}, older than "
            f"this recoverkit's {SCHEMA_VERSION}: migrate it with `recoverkit db init URL{_schema_option(schema)}` "
            "or recoverkit.store.postgres.init(url) first"
        )
    (salt,) = conn.execute("SELECT value FROM meta WHERE key = 'salt'").fetchone() or ("",)
    return partitions, bytes.fromhex(str(salt))


def _schema_option(schema: str) -> str:
    """The ``db init`` option that names ``schema``, when it is not the default."""
    return "" if schema == "recoverkit" else f" --schema {schema}"


def schema_problems(conn: Conn, partitions: int) -> list[str]:
    """Problems in the stored data, one sentence each (see :meth:`PostgresStore.check`)."""
    problems: list[str] = []
    for table, column in (("journal_heads", "part"), ("partition_leases", "part")):
        (count, low, high) = conn.execute(
            f"SELECT count(*), min({column}), max({column}) FROM {table}"  # names of ours
        ).fetchone() or (0, None, None)
        if (count, low, high) != (partitions, 0, partitions - 1):
            problems.append(f"{table} has rows for {count} partitions ({low}..{high}); expected 0..{partitions - 1}")
    # Every partition's journal is one run of positions, trimmed from the front only, never past its head.
    rows = conn.execute(
        "SELECT j.part, count(*), min(j.position), max(j.position), h.last_position FROM journal j "
        "LEFT JOIN journal_heads h ON h.part = j.part GROUP BY j.part, h.last_position ORDER BY j.part"
    ).fetchall()
    for part, count, low, high, head in rows:
        if head is None or high > head:
            problems.append(f"journal partition {part} holds position {high}, past its head {head}")
        if count != high - low + 1:
            problems.append(f"journal partition {part} has a gap: {count} events between positions {low} and {high}")
    bad = conn.execute(
        "SELECT count(*) FROM ledger WHERE state NOT IN ('sending', 'sent', 'failed', 'dead', 'cancelled', 'unknown')"
    ).fetchone()
    if bad and bad[0]:
        problems.append(f"{bad[0]} ledger entries are in an unknown state")
    return problems + audit_schema_problems(conn)
