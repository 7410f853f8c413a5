"""The ``onsite`` table (:mod:`recoverkit.store._onsite`) in SQLite and in PostgreSQL: each store's migration.

``position`` numbers the puts in commit order (SQLite: one writer at a time; PostgreSQL: a put takes a
transaction-level advisory lock first), which is what lets a reader ask only for what is new.
"""

from __future__ import annotations

from typing import Final

__all__ = ["POSTGRES_ONSITE", "SQLITE_ONSITE"]

#: SQLite's migration 6.
SQLITE_ONSITE: Final = """
-- On-site offers waiting for their visitor (store/_onsite.py).
CREATE TABLE onsite (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    token TEXT NOT NULL UNIQUE,
    cart_key TEXT NOT NULL,
    contact_key TEXT NOT NULL,
    session_id TEXT,
    customer_id TEXT,
    started_at REAL NOT NULL,
    put_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    shows INTEGER NOT NULL,
    shown INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'waiting',
    message BLOB NOT NULL
);
CREATE INDEX onsite_session ON onsite (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX onsite_customer ON onsite (customer_id) WHERE customer_id IS NOT NULL;
CREATE INDEX onsite_contact ON onsite (contact_key);
CREATE INDEX onsite_expiry ON onsite (expires_at);
"""

#: PostgreSQL's migration 2.
POSTGRES_ONSITE: Final = """
    CREATE TABLE onsite (
        position bigserial PRIMARY KEY, key text NOT NULL UNIQUE, token text NOT NULL UNIQUE,
        cart_key text NOT NULL, contact_key text NOT NULL, session_id text, customer_id text,
        started_at double precision NOT NULL, put_at double precision NOT NULL, expires_at double precision NOT NULL,
        shows integer NOT NULL, shown integer NOT NULL DEFAULT 0, state text NOT NULL DEFAULT 'waiting',
        message bytea NOT NULL
    );
    CREATE INDEX onsite_session ON onsite (session_id) WHERE session_id IS NOT NULL;
    CREATE INDEX onsite_customer ON onsite (customer_id) WHERE customer_id IS NOT NULL;
    CREATE INDEX onsite_contact ON onsite (contact_key);
    CREATE INDEX onsite_expiry ON onsite (expires_at);
"""
