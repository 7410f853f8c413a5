"""The on-site offers of a :class:`~recoverkit.store.postgres.PostgresStore`
(:class:`~recoverkit.store.OnsiteStore`), with the statements SQLite's part runs (``%s`` for ``?``).

A put takes a transaction-level advisory lock before it draws its position, so positions are committed in the
order they are drawn: a reader that asks for what is after the last position it saw misses no put that was
still committing when it asked (a plain ``bigserial`` would not promise that).
"""

from __future__ import annotations

from typing import Final

from .._onsite import OnsiteChanges, OnsiteMark, OnsiteOffer, check_mark, check_offer, check_visitor
from .._privacy import ForgetReport
from .._sqlite_onsite import SQL as _SQLITE
from .._sqlite_onsite import changes_of, marked, offer_of, offer_row, theirs
from ._plumbing import Conn, Plumbing

__all__ = ["PostgresOnsite"]

_SQL: Final = {name: statement.replace("?", "%s") for name, statement in _SQLITE.items()}
#: The advisory lock that orders puts (any fixed number: the lock is per database, the schema in the key).
_PUT_LOCK: Final = "SELECT pg_advisory_xact_lock(hashtext('recoverkit.onsite.' || current_schema()))"


class PostgresOnsite(Plumbing):
    """:class:`~recoverkit.store.OnsiteStore` in the ``onsite`` table; answers are judged against the
    ``purchases`` table in the same statement. Put first in the store's bases: its :meth:`forget` adds the
    offers to the privacy part's."""

    def put_onsite(self, offer: OnsiteOffer) -> bool:
        check_offer(offer)

        def run(conn: Conn) -> bool:
            conn.execute(_PUT_LOCK)
            conn.execute(_SQL["expire"], (offer.put_at,))
            return conn.execute(_SQL["put"], offer_row(offer)).rowcount == 1

        return self._write("put_onsite", run)

    def onsite_changes(self, after: int, *, now: float) -> OnsiteChanges:
        return self._read(
            "onsite_changes", lambda conn: changes_of(conn.execute(_SQL["changes"], (after,)).fetchall(), after, now)
        )

    def onsite_for(self, *, session_id: str | None, customer_id: str | None, now: float) -> list[OnsiteOffer]:
        check_visitor("onsite_for", session_id, customer_id)

        def run(conn: Conn) -> list[OnsiteOffer]:
            return [offer_of(row) for row in conn.execute(_SQL["for"], (*theirs(session_id, customer_id), now))]

        return self._read("onsite_for", run)

    def mark_onsite(
        self, token: str, mark: OnsiteMark, *, session_id: str | None, customer_id: str | None, now: float
    ) -> OnsiteOffer | None:
        check_mark(token, mark)
        check_visitor("mark_onsite", session_id, customer_id)

        def run(conn: Conn) -> OnsiteOffer | None:
            row = conn.execute(_SQL["one"] + " FOR UPDATE", (token, *theirs(session_id, customer_id), now)).fetchone()
            found = marked(row, mark)
            if found is None:
                return None
            conn.execute(_SQL["mark"], (found[1].state, found[1].shown, token))
            return found[0]

        return self._write("mark_onsite", run)

    def forget_onsite(self, contact_key: str) -> int:
        return self._write(
            "forget_onsite", lambda conn: conn.execute(_SQL["forget"], (contact_key,)).rowcount, transaction=False
        )

    def forget(self, contact_key: str, *, at: float) -> ForgetReport:
        """The privacy part's erasure, then the contact's on-site offers (a second transaction)."""
        report: ForgetReport = super().forget(contact_key, at=at)  # type: ignore[misc]  # the privacy part's
        self.forget_onsite(contact_key)
        return report
