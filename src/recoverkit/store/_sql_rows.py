"""What the two SQL backends (SQLite, PostgreSQL) share: the column lists of the record tables, the row →
record mappers, and the analytics fact readers.

Both backends keep the same table layout for codes and facts (store/_schema.py and store/postgres/_schema.py);
their SQL differs in the placeholder (``?`` against ``%s``) and little else, so the queries that differ only
there are written once, here, with the backend's :attr:`SQLFactReaders.MARK`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar

import msgspec

from ..facts import Assignment, Conversion, LinkVisit, MessageOutcome
from ._codes import CodeRecord

__all__ = [
    "ASSIGNMENT_COLUMNS", "CODE_COLUMNS", "CONVERSION_COLUMNS", "LIMIT_COLUMNS", "OUTCOME_COLUMNS", "OUTCOME_FIELDS",
    "SQLFactReaders", "assignment_of", "code_record_of", "conversion_of", "json_encoder", "variants_decoder",
]  # fmt: skip

T = TypeVar("T")

CODE_COLUMNS: Final = (
    "hash, cart_key, contact_key, kind, issued_at, expires_at, percent, amount, currency, min_value, domain, device, "
    "redeemed_at, redeemed_order"
)
#: The column each kind of limit counts codes by; names of ours, never the caller's, so formatting them in is safe.
LIMIT_COLUMNS: Final = {"contact": "contact_key", "domain": "domain", "device": "device"}
ASSIGNMENT_COLUMNS: Final = (
    "cart_key, flow, grp, scope, contact_key, assigned_at, value, currency, variants, score, reason, trigger_"
)
CONVERSION_COLUMNS: Final = "cart_key, at, contact_key, own, value, currency, transaction_id"
OUTCOME_FIELDS: Final = (
    "key", "cart_key", "contact_key", "flow", "step", "outcome", "at", "channel", "variant", "offer", "offer_kind"
)  # fmt: skip
OUTCOME_COLUMNS: Final = ", ".join(OUTCOME_FIELDS)
json_encoder: Final = msgspec.json.Encoder()
variants_decoder: Final = msgspec.json.Decoder(dict[str, str])


def assignment_of(row: tuple[Any, ...]) -> Assignment:
    cart_key, flow, group, scope, contact_key, at, value, currency, variants, score, reason, trigger = row
    return Assignment(
        cart_key=cart_key, flow=flow, group=group, scope=scope, contact_key=contact_key, assigned_at=at, value=value,
        currency=currency, variants=variants_decoder.decode(variants), score=score, reason=reason, trigger=trigger,
    )  # fmt: skip


def conversion_of(row: tuple[Any, ...]) -> Conversion:
    cart_key, at, contact_key, own, value, currency, transaction_id = row
    # SQLite stores the flag as 0/1, PostgreSQL as a boolean: bool() reads both.
    return Conversion(
        cart_key=cart_key, at=at, contact_key=contact_key, own=bool(own), value=value, currency=currency,
        transaction_id=transaction_id,
    )  # fmt: skip


def code_record_of(row: tuple[Any, ...]) -> CodeRecord:
    (code_hash, cart_key, contact_key, kind, issued_at, expires_at, percent, amount, currency, min_value, domain,
     device, redeemed_at, redeemed_order) = row  # fmt: skip
    return CodeRecord(
        code_hash=code_hash, cart_key=cart_key, contact_key=contact_key, kind=kind, issued_at=issued_at,
        expires_at=expires_at, percent=percent, amount=amount, currency=currency, min_value=min_value, domain=domain,
        device=device, redeemed_at=redeemed_at, redeemed_order=redeemed_order,
    )  # fmt: skip


class SQLFactReaders:
    """The readers of :class:`~recoverkit.store.FactStore` for a SQL backend: each fact table read in a window of
    time ``[since, until)``, in time order with a tie-break, through the backend's ``_read`` (one read
    transaction)."""

    #: The backend's parameter placeholder: ``?`` (sqlite3) or ``%s`` (psycopg).
    MARK: ClassVar[str]

    if TYPE_CHECKING:  # given by the backend's base class

        def _read(self, name: str, run: Callable[[Any], T]) -> T: ...

    def assignments(self, *, since: float | None = None, until: float | None = None) -> list[Assignment]:
        rows = self._window("assignments", ASSIGNMENT_COLUMNS, "assigned_at", "cart_key, flow", since, until)
        return [assignment_of(row) for row in rows]

    def conversions(self, *, since: float | None = None, until: float | None = None) -> list[Conversion]:
        rows = self._window("conversions", CONVERSION_COLUMNS, "at", "cart_key", since, until)
        return [conversion_of(row) for row in rows]

    def outcomes(self, *, since: float | None = None, until: float | None = None) -> list[MessageOutcome]:
        rows = self._window("outcomes", OUTCOME_COLUMNS, "at", "key, outcome", since, until)
        return [MessageOutcome(**dict(zip(OUTCOME_FIELDS, row, strict=True))) for row in rows]

    def visits(self, *, since: float | None = None, until: float | None = None) -> list[LinkVisit]:
        rows = self._window("visits", "cart_key, at", "at", "cart_key", since, until)
        return [LinkVisit(cart_key=cart_key, at=at) for cart_key, at in rows]

    def _window(
        self, table: str, columns: str, time: str, tie: str, since: float | None, until: float | None
    ) -> list[tuple[Any, ...]]:
        low = -math.inf if since is None else since
        high = math.inf if until is None else until
        mark = self.MARK
        statement = f"SELECT {columns} FROM {table} WHERE {time} >= {mark} AND {time} < {mark} ORDER BY {time}, {tie}"
        return self._read(table, lambda conn: conn.execute(statement, (low, high)).fetchall())
