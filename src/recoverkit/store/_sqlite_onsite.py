"""The on-site offers of a :class:`~recoverkit.store.SQLiteStore` (:class:`~recoverkit.store.OnsiteStore`), in
the ``onsite`` table; the SQL is shared with PostgreSQL's part (``?`` placeholders become ``%s`` there)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Final

from ._onsite import (
    CHANGES_LIMIT,
    OnsiteChanges,
    OnsiteMark,
    OnsiteOffer,
    after_mark,
    check_mark,
    check_offer,
    check_visitor,
    visitor_keys,
)
from ._privacy import ForgetReport
from ._sqlite_file import SQLiteFile

__all__ = ["SQL", "SQLiteOnsite", "offer_of", "offer_row"]

_COLUMNS: Final = (
    "token, key, cart_key, contact_key, session_id, customer_id, started_at, put_at, expires_at, shows, message, "
    "state, shown"
)
#: A row is live when waiting, unexpired, and neither its cart nor its contact was bought since it started.
_LIVE: Final = (
    "state = 'waiting' AND expires_at > ? AND NOT EXISTS (SELECT 1 FROM purchases p WHERE "
    "((p.kind = 'cart' AND p.key = onsite.cart_key) OR (p.kind = 'contact' AND p.key = onsite.contact_key)) "
    "AND p.at >= onsite.started_at)"
)
# The casts tell PostgreSQL the parameters' type (it cannot infer it from IS NOT NULL); SQLite ignores them.
_THEIRS: Final = (
    "((CAST(? AS TEXT) IS NOT NULL AND session_id = ?) OR (CAST(? AS TEXT) IS NOT NULL AND customer_id = ?))"
)

#: The statements both SQL stores run, with ``?`` placeholders.
SQL: Final = {
    "expire": "DELETE FROM onsite WHERE expires_at < ?",
    "put": f"INSERT INTO onsite ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    "changes": (
        "SELECT position, session_id, customer_id, expires_at FROM onsite WHERE position > ? ORDER BY position "
        f"LIMIT {CHANGES_LIMIT}"
    ),
    "for": f"SELECT {_COLUMNS} FROM onsite WHERE {_THEIRS} AND shown < shows AND {_LIVE} ORDER BY put_at DESC, key",
    "one": f"SELECT {_COLUMNS} FROM onsite WHERE token = ? AND {_THEIRS} AND {_LIVE}",
    "mark": "UPDATE onsite SET state = ?, shown = ? WHERE token = ?",
    "forget": "DELETE FROM onsite WHERE contact_key = ?",
}


def offer_row(offer: OnsiteOffer) -> tuple[Any, ...]:
    """``offer`` as the values of :data:`_COLUMNS`, in order."""
    return (
        offer.token, offer.key, offer.cart_key, offer.contact_key, offer.session_id, offer.customer_id,
        offer.started_at, offer.put_at, offer.expires_at, offer.shows, bytes(offer.message), offer.state, offer.shown,
    )  # fmt: skip


def offer_of(row: Sequence[Any]) -> OnsiteOffer:
    """The offer a row of :data:`_COLUMNS` holds."""
    token, key, cart, contact, session, customer, started, put, expires, shows, message, state, shown = row
    return OnsiteOffer(
        token=token, key=key, cart_key=cart, contact_key=contact, session_id=session, customer_id=customer,
        started_at=float(started), put_at=float(put), expires_at=float(expires), shows=int(shows),
        message=bytes(message), state=state, shown=int(shown),
    )  # fmt: skip


def theirs(session_id: str | None, customer_id: str | None) -> tuple[Any, ...]:
    """The parameters of :data:`_THEIRS`."""
    return (session_id or None, session_id or None, customer_id or None, customer_id or None)


def changes_of(rows: Sequence[Sequence[Any]], after: int, now: float) -> OnsiteChanges:
    """What :meth:`~recoverkit.store.OnsiteStore.onsite_changes` answers, from the rows of ``SQL["changes"]``."""
    visitors: list[tuple[str, float]] = []
    position = max(after, 0)
    for seq, session, customer, expires in rows:
        position = int(seq)
        if float(expires) > now:
            visitors.extend((key, float(expires)) for key in visitor_keys(session, customer))
    return OnsiteChanges(position=position, visitors=visitors)


def marked(row: Sequence[Any] | None, mark: OnsiteMark) -> tuple[OnsiteOffer, OnsiteOffer] | None:
    """The offer a ``SQL["one"]`` row holds and the same after ``mark``; ``None`` when it cannot be marked."""
    if row is None:
        return None
    offer = offer_of(row)
    after = after_mark(offer, mark)
    return None if after is None else (offer, after)


class SQLiteOnsite(SQLiteFile):
    """:class:`~recoverkit.store.OnsiteStore` in the ``onsite`` table; answers are judged against the
    ``purchases`` table in the same statement. Put first in the store's bases: its :meth:`forget` adds the
    offers to the privacy part's."""

    def put_onsite(self, offer: OnsiteOffer) -> bool:
        check_offer(offer)

        def run(conn: sqlite3.Connection) -> bool:
            conn.execute(SQL["expire"], (offer.put_at,))
            return conn.execute(SQL["put"], offer_row(offer)).rowcount == 1

        return self._write("put_onsite", run)

    def onsite_changes(self, after: int, *, now: float) -> OnsiteChanges:
        def run(conn: sqlite3.Connection) -> OnsiteChanges:
            return changes_of(conn.execute(SQL["changes"], (after,)).fetchall(), after, now)

        return self._read("onsite_changes", run)

    def onsite_for(self, *, session_id: str | None, customer_id: str | None, now: float) -> list[OnsiteOffer]:
        check_visitor("onsite_for", session_id, customer_id)

        def run(conn: sqlite3.Connection) -> list[OnsiteOffer]:
            rows = conn.execute(SQL["for"], (*theirs(session_id, customer_id), now)).fetchall()
            return [offer_of(row) for row in rows]

        return self._read("onsite_for", run)

    def mark_onsite(
        self, token: str, mark: OnsiteMark, *, session_id: str | None, customer_id: str | None, now: float
    ) -> OnsiteOffer | None:
        check_mark(token, mark)
        check_visitor("mark_onsite", session_id, customer_id)

        def run(conn: sqlite3.Connection) -> OnsiteOffer | None:
            row = conn.execute(SQL["one"], (token, *theirs(session_id, customer_id), now)).fetchone()
            found = marked(row, mark)
            if found is None:
                return None
            conn.execute(SQL["mark"], (found[1].state, found[1].shown, token))
            return found[0]

        return self._write("mark_onsite", run)

    def forget_onsite(self, contact_key: str) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(SQL["forget"], (contact_key,)).rowcount

        return self._write("forget_onsite", run)

    def forget(self, contact_key: str, *, at: float) -> ForgetReport:
        """The privacy part's erasure, then the contact's on-site offers (a second transaction)."""
        report: ForgetReport = super().forget(contact_key, at=at)  # type: ignore[misc]  # the privacy part's
        self.forget_onsite(contact_key)
        return report
