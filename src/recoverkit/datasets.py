"""Public e-commerce datasets turned into recoverkit events, for the demo, tests and benchmarks.

Two public datasets record what real shoppers did; the converters here turn their CSV exports into the
event contract of :mod:`recoverkit.events` so that the engine can be run on behaviour nobody on the team made
up:

* :func:`rees46_events` reads REES46 / Open CDP "eCommerce behavior data from multi category store"
  (``event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session``).
  A slice of it, converted, ships with recoverkit as the demo stream (:func:`demo_events`,
  :func:`demo_events_path`; provenance and terms in ``recoverkit/data/ATTRIBUTION.md``).
* :func:`retailrocket_events` reads the Retailrocket ``events.csv``
  (``timestamp,visitorid,event,itemid,transactionid``). It is licensed CC BY-NC-SA 4.0 (non-commercial), so
  recoverkit never bundles it; bring your own copy.

Each converter is a generator of events in non-decreasing ``ts`` order. To sort, it reads the whole file
before yielding the first event: this is meant for slices and samples (the 17k-row REES46 slice needs a few
MB), not for the full multi-GB monthly exports, which should be split by time first. Because of that, a
malformed row is reported before any event is yielded. With ``on_error="raise"`` (the default) it raises
:class:`DatasetError` naming the file, the line, the column and the value; with ``on_error="skip"`` the row
is left out and counted in the :class:`ConversionStats` passed as ``stats``.

:func:`write_jsonl` and :func:`read_jsonl` store any event stream as JSON lines (gzip when the name ends in
``.gz``), one :func:`~recoverkit.events.encode_event` object per line.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import IO, Final

from ._dataset_rows import (
    ConversionStats,
    DatasetError,
    OnError,
    Reader,
    RowError,
    check_on_error,
    decimal_price,
    integer_id,
    short_text,
    text_id,
)
from .events import (
    AddToCart,
    Consent,
    Event,
    Identify,
    Item,
    Purchase,
    ViewItem,
    decode_event,
    encode_event,
)

__all__ = [
    "ConversionStats",
    "DatasetError",
    "demo_events",
    "demo_events_path",
    "read_jsonl",
    "rees46_events",
    "retailrocket_events",
    "write_jsonl",
]

# Defined with the CSV reader that raises and counts them; tracebacks and docs name them here, where a shop
# imports them from.
DatasetError.__module__ = ConversionStats.__module__ = __name__

_DEMO_FILE: Final = "demo-events.jsonl.gz"
#: The demo keeps the sessions that start in the slice's first 155 minutes (00:00-02:35 UTC), with all their
#: events: the whole slice, converted, is about 1 MB of gzip, too much to ship inside a library.
_DEMO_MINUTES: Final = 155
_REES46_COLUMNS: Final = (
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "brand",
    "price",
    "user_id",
    "user_session",
)
_RETAILROCKET_COLUMNS: Final = ("timestamp", "visitorid", "event", "itemid", "transactionid")
_EPOCH_MIN: Final = 946_684_800.0  # 2000-01-01, the contract's accepted range for ts
_EPOCH_MAX: Final = 4_102_444_800.0  # 2100-01-01
_UNIX_EPOCH: Final = datetime(1970, 1, 1)  # naive, like the UTC times it is subtracted from
_SYNTHETIC_EMAIL_DOMAIN: Final = "example.invalid"  # RFC 2606: can never be delivered to anyone


# --------------------------------------------------------------------------------------------- REES46


class _Rees46Row:
    __slots__ = ("category", "kind", "line", "name", "price", "product_id", "session_id", "ts", "user_id")

    def __init__(
        self,
        line: int,
        ts: float,
        kind: str,
        product_id: str,
        price: Decimal,
        user_id: str,
        session_id: str,
        name: str | None,
        category: str | None,
    ) -> None:
        self.line = line
        self.ts = ts
        self.kind = kind
        self.product_id = product_id
        self.price = price
        self.user_id = user_id
        self.session_id = session_id
        self.name = name
        self.category = category


class _Rees46Times:
    """Parses ``2019-10-01 00:00:00 UTC``; rows come in bursts per second, so the last answer is reused."""

    def __init__(self) -> None:
        self._text = ""
        self._ts = 0.0

    def __call__(self, text: str) -> float:
        if text == self._text:
            return self._ts
        try:
            if not text.endswith(" UTC"):
                raise ValueError(text)
            ts = (datetime.fromisoformat(text[:-4]) - _UNIX_EPOCH).total_seconds()
        except ValueError:
            raise RowError("event_time", text, "a time such as '2019-10-01 00:00:00 UTC'") from None
        if not _EPOCH_MIN <= ts <= _EPOCH_MAX:
            raise RowError("event_time", text, "a time between the years 2000 and 2100")
        self._text, self._ts = text, ts
        return ts


_REES46_KINDS: Final[dict[str, type[ViewItem | AddToCart | Purchase]]] = {
    "view": ViewItem,
    "cart": AddToCart,
    "purchase": Purchase,
}


def _rees46_name(brand: str, category_code: str) -> str | None:
    # "samsung" + "electronics.smartphone" -> "samsung smartphone": the last level of the category names the
    # product well enough for a message ("You left your samsung smartphone in your cart").
    kind = category_code.strip().rpartition(".")[2].replace("_", " ")
    return short_text(" ".join(part for part in (brand.strip(), kind) if part))


def rees46_events(
    csv_path: str | os.PathLike[str],
    *,
    synthesize_contacts: bool = True,
    on_error: OnError = "raise",
    stats: ConversionStats | None = None,
) -> Iterator[Event]:
    """Convert a REES46 / Open CDP multi-category-store CSV into events, in ``ts`` order.

    Mapping, row by row: ``view`` -> ``view_item``, ``cart`` -> ``add_to_cart``, ``purchase`` ->
    ``purchase``, each with ``items`` = the one product (``item_id`` = ``product_id``, ``price`` =
    ``price``, quantity 1, ``name`` = brand and the last level of ``category_code``, ``category`` =
    ``category_code``) and ``value`` = the price. ``session_id`` is ``user_session`` and ``customer_id`` is
    ``user_id``. The dataset has no order ids, so each purchase row is one order with ``transaction_id``
    ``f"{user_session}-{n}"`` (the n-th purchase row of that session, from 1) - deterministic, so
    re-converting gives the same ids. The dataset states no currency; its prices are US-dollar-like, so
    events say ``USD``. Prices are read as :class:`~decimal.Decimal` from the CSV text, never as floats.

    Rows without a ``user_session`` (the published slice's last row is cut off) are dropped and counted in
    ``stats.incomplete``. Events are stably sorted by time, so rows of the same second keep file order.

    **Synthetic contacts.** The dataset holds no contact details or consent, so a recovery message could
    never be addressed. With ``synthesize_contacts`` (the default), the first time a ``user_id`` appears
    the converter adds, at the same ``ts`` and just before that user's first event, an ``identify`` event
    with the made-up address ``user-{user_id}@example.invalid`` (a reserved domain that can never receive
    mail; no phone) and a ``consent`` event granting ``["email"]``. These two events are not in the source
    data: they exist so that the demo can show messages. Pass ``synthesize_contacts=False`` for the
    behaviour alone.
    """
    check_on_error(on_error)
    return _rees46(csv_path, synthesize_contacts, on_error, stats or ConversionStats())


def _rees46(
    path: str | os.PathLike[str], contacts: bool, on_error: OnError, stats: ConversionStats
) -> Iterator[Event]:
    reader = Reader(path, _REES46_COLUMNS, on_error, stats)
    parse_time = _Rees46Times()
    names: dict[tuple[str, str], str | None] = {}  # brand and category repeat a lot; build each name once
    rows: list[_Rees46Row] = []
    for line, row in reader.rows():
        if not row["user_session"].strip():
            stats.incomplete += 1
            continue
        try:
            ts = parse_time(row["event_time"])
            kind = row["event_type"]
            if kind not in _REES46_KINDS:
                raise RowError("event_type", kind, "'view', 'cart' or 'purchase'")
            key = (row["brand"], row["category_code"])
            if key not in names:
                names[key] = _rees46_name(*key)
            rows.append(
                _Rees46Row(
                    line,
                    ts,
                    kind,
                    text_id(row, "product_id"),
                    decimal_price(row, "price"),
                    integer_id(row, "user_id"),
                    text_id(row, "user_session"),
                    names[key],
                    short_text(row["category_code"]),
                )
            )
        except RowError as exc:
            reader.fail(line, exc.column, exc.value, exc.expected)
    rows.sort(key=lambda r: r.ts)  # stable: rows of one second keep file order

    known_users: set[str] = set()
    purchases: dict[str, int] = {}
    for r in rows:
        if contacts and r.user_id not in known_users:
            known_users.add(r.user_id)
            yield Identify(
                session_id=r.session_id,
                customer_id=r.user_id,
                ts=r.ts,
                email=f"user-{r.user_id}@{_SYNTHETIC_EMAIL_DOMAIN}",
            )
            yield Consent(session_id=r.session_id, customer_id=r.user_id, ts=r.ts, granted=("email",))
            stats.events += 2
        event_type = _REES46_KINDS[r.kind]
        transaction_id = None
        if event_type is Purchase:
            n = purchases[r.session_id] = purchases.get(r.session_id, 0) + 1
            transaction_id = f"{r.session_id}-{n}"
        yield event_type(
            session_id=r.session_id,
            customer_id=r.user_id,
            ts=r.ts,
            currency="USD",
            value=r.price,
            items=(Item(item_id=r.product_id, price=r.price, name=r.name, category=r.category),),
            transaction_id=transaction_id,
        )
        stats.events += 1


# ---------------------------------------------------------------------------------------- Retailrocket


class _RetailrocketRow:
    __slots__ = ("item_id", "kind", "line", "ms", "transaction_id", "visitor")

    def __init__(
        self, line: int, ms: int, visitor: str, kind: str, item_id: str, transaction_id: str | None
    ) -> None:
        self.line = line
        self.ms = ms
        self.visitor = visitor
        self.kind = kind
        self.item_id = item_id
        self.transaction_id = transaction_id


def _transaction_id(row: dict[str, str], kind: str) -> str | None:
    text = row["transactionid"].strip()
    if kind != "transaction":
        return None
    try:
        # Written as a float ("14418.0") by the pandas export; the id is the integer.
        number = float(text)
        if not number.is_integer() or number < 0:
            raise ValueError(text)
        return str(int(number))
    except ValueError:
        expected = "a transaction id such as '14418.0' on a transaction row"
        raise RowError("transactionid", text, expected) from None


def retailrocket_events(
    csv_path: str | os.PathLike[str],
    *,
    session_gap: float = 1800.0,
    on_error: OnError = "raise",
    stats: ConversionStats | None = None,
) -> Iterator[Event]:
    """Convert a Retailrocket ``events.csv`` into events, in ``ts`` order.

    The dataset has no sessions, so each visitor's events are cut into sessions wherever more than
    ``session_gap`` seconds pass without an event (30 minutes, the usual analytics convention);
    ``session_id`` is ``f"rr-{visitorid}-{k}"`` with ``k`` counting that visitor's sessions from 1, and
    ``customer_id`` is ``visitorid``. ``timestamp`` is in milliseconds and becomes epoch seconds.

    Mapping: ``view`` -> ``view_item``, ``addtocart`` -> ``add_to_cart`` with one item of quantity 1, and
    ``transaction`` -> ``purchase`` with ``transaction_id`` = ``transactionid`` as an integer (the file
    writes ``14418.0``). One order is one purchase event: the rows of one visitor that share a
    ``transactionid`` (one per product, milliseconds apart) become a single ``purchase`` at the first row's
    time carrying all their items. **The dataset has no prices**: item prices are 0 and events carry no
    ``currency`` or ``value``, so money figures computed from it are meaningless; use it for timing and
    funnel behaviour. It has no contact details either, and none are invented.

    Licence: CC BY-NC-SA 4.0 (non-commercial); recoverkit does not ship it.
    """
    if not session_gap > 0:
        raise ValueError(f"session_gap={session_gap!r}; expected a positive number of seconds")
    check_on_error(on_error)
    return _retailrocket(csv_path, session_gap, on_error, stats or ConversionStats())


def _retailrocket(
    path: str | os.PathLike[str], session_gap: float, on_error: OnError, stats: ConversionStats
) -> Iterator[Event]:
    reader = Reader(path, _RETAILROCKET_COLUMNS, on_error, stats)
    by_visitor: dict[str, list[_RetailrocketRow]] = {}
    for line, row in reader.rows():
        try:
            try:
                ms = int(row["timestamp"])
            except ValueError:
                raise RowError("timestamp", row["timestamp"], "epoch milliseconds") from None
            if not _EPOCH_MIN * 1000 <= ms <= _EPOCH_MAX * 1000:
                raise RowError("timestamp", row["timestamp"], "epoch milliseconds between 2000 and 2100")
            kind = row["event"]
            if kind not in ("view", "addtocart", "transaction"):
                raise RowError("event", kind, "'view', 'addtocart' or 'transaction'")
            visitor = integer_id(row, "visitorid")
            parsed = _RetailrocketRow(
                line, ms, visitor, kind, integer_id(row, "itemid"), _transaction_id(row, kind)
            )
        except RowError as exc:
            reader.fail(line, exc.column, exc.value, exc.expected)
            continue
        by_visitor.setdefault(visitor, []).append(parsed)

    gap_ms = session_gap * 1000
    out: list[tuple[int, int, Event]] = []  # (ms, line, event): sorted globally at the end
    for visitor, visits in by_visitor.items():
        # The file is sorted by visitor, then time; a file from elsewhere may not be.
        visits.sort(key=lambda r: (r.ms, r.line))
        k = 0
        last_ms: int | None = None
        orders: dict[str, tuple[int, int, str, list[Item]]] = {}
        for r in visits:
            if last_ms is None or r.ms - last_ms > gap_ms:
                k += 1
            last_ms = r.ms
            session_id = f"rr-{visitor}-{k}"
            item = Item(item_id=r.item_id)
            if r.transaction_id is not None:
                if r.transaction_id in orders:
                    orders[r.transaction_id][3].append(item)
                else:
                    orders[r.transaction_id] = (r.ms, r.line, session_id, [item])
                continue
            event_type = ViewItem if r.kind == "view" else AddToCart
            out.append(
                (
                    r.ms,
                    r.line,
                    event_type(session_id=session_id, customer_id=visitor, ts=r.ms / 1000, items=(item,)),
                )
            )
        for transaction_id, (ms, line, session_id, items) in orders.items():
            out.append(
                (
                    ms,
                    line,
                    Purchase(
                        session_id=session_id,
                        customer_id=visitor,
                        ts=ms / 1000,
                        items=tuple(items),
                        transaction_id=transaction_id,
                    ),
                )
            )
    out.sort(key=lambda entry: (entry[0], entry[1]))
    for _, _, event in out:
        stats.events += 1
        yield event


# ---------------------------------------------------------------------------------- JSON lines and demo


def write_jsonl(events: Iterable[Event], path: str | os.PathLike[str]) -> int:
    """Write ``events`` to ``path`` as JSON lines, gzip-compressed when the name ends in ``.gz``.

    Each line is :func:`~recoverkit.events.encode_event`'s JSON, so :func:`read_jsonl` and the engine's
    decoder read it back unchanged. Returns the number of events written. Writing the same events twice
    gives byte-identical files (the gzip header carries no time stamp or file name).
    """
    target = Path(path)
    with open(target, "wb") as raw:
        if target.suffix == ".gz":
            # mtime=0 and no name: the same events give the same bytes, so the bundled demo file only
            # changes in version control when its content does.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
                return _write_lines(events, packed)
        return _write_lines(events, raw)


def _write_lines(events: Iterable[Event], out: IO[bytes] | gzip.GzipFile) -> int:
    count = 0
    batch: list[bytes] = []
    for event in events:
        batch.append(encode_event(event))
        if len(batch) >= 1024:  # one write per thousand lines: per-line writes would dominate
            out.write(b"\n".join(batch) + b"\n")
            count += len(batch)
            batch.clear()
    if batch:
        out.write(b"\n".join(batch) + b"\n")
        count += len(batch)
    return count


def _decode_lines(stream: Iterable[bytes], name: str) -> Iterator[Event]:
    number = 0
    lines = iter(stream)
    while True:
        try:
            raw = next(lines, None)
        except (EOFError, zlib.error, OSError) as exc:
            # EOFError: a .gz cut short; zlib.error, BadGzipFile (an OSError): corrupt compressed data.
            why = "it ends before its end-of-stream marker (truncated)" if isinstance(exc, EOFError) else str(exc)
            raise DatasetError(
                f"{name}: could not be read to the end: {why}; read {number:,} line(s) whole; expected a complete "
                "file",
                path=name,
                line=number,
            ) from exc
        if raw is None:
            return
        number += 1
        line = raw.strip()
        if not line:
            continue
        try:
            yield decode_event(line)
        except ValueError as exc:  # InvalidEvent: say where, then what
            raise DatasetError(f"{name}, line {number}: {exc}", path=name, line=number) from exc


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[Event]:
    """Decode the events of a JSON-lines file (gzip when the name ends in ``.gz``), validating each line.

    Raises :class:`DatasetError` naming the file and line of the first invalid event (chained to the
    :class:`~recoverkit.errors.InvalidEvent` that says what is wrong with it), or naming the file and the last
    line read whole when it cannot be read to the end (a truncated ``.gz``). Blank lines are ignored.
    """
    target = Path(path)
    if target.suffix == ".gz":
        with gzip.open(target, "rb") as packed:
            yield from _decode_lines(packed, os.fspath(target))
    else:
        with open(target, "rb") as plain:
            yield from _decode_lines(plain, os.fspath(target))


def demo_events_path() -> Path:
    """The bundled demo stream as gzip JSON lines: REES46 sessions of 2019-10-01 that started 00:00-02:35 UTC.

    See ``recoverkit/data/ATTRIBUTION.md`` for the source, the terms and what was changed; in short, its
    ``identify``/``consent`` events and ``@example.invalid`` addresses are synthetic. Raises
    :class:`FileNotFoundError` when recoverkit is imported from somewhere without real files (a zip); use
    :func:`demo_events` there.
    """
    resource = files("recoverkit") / "data" / _DEMO_FILE
    if isinstance(resource, Path) and resource.is_file():
        return resource
    raise FileNotFoundError(
        f"the bundled {_DEMO_FILE} is not a file on disk here ({resource!r}); "
        "read it with recoverkit.datasets.demo_events() instead"
    )


def demo_events() -> Iterator[Event]:
    """Decode the bundled demo stream (see :func:`demo_events_path`), wherever recoverkit is installed."""
    resource = files("recoverkit") / "data" / _DEMO_FILE
    with resource.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as stream:
        yield from _decode_lines(stream, f"recoverkit/data/{_DEMO_FILE}")


def _write_demo_file(csv_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> int:
    """Rebuild the bundled demo file from the REES46 slice (maintainers only; see ATTRIBUTION.md)."""
    events = list(rees46_events(csv_path))
    if not events:
        raise DatasetError(f"{os.fspath(csv_path)}: no events to build a demo from", path=os.fspath(csv_path))
    cutoff = _ts(events[0]) + _DEMO_MINUTES * 60
    kept: set[str] = set()
    seen: set[str] = set()
    for event in events:  # in ts order, so the first event of a session is where it starts
        if event.session_id not in seen:
            seen.add(event.session_id)
            if _ts(event) < cutoff:
                kept.add(event.session_id)
    return write_jsonl((e for e in events if e.session_id in kept), out_path)


def _ts(event: Event) -> float:
    if not isinstance(event.ts, float):  # the converters always set epoch seconds
        raise TypeError(f"event without epoch-seconds ts: {event!r}")
    return event.ts
