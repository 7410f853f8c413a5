"""Reading a dataset's CSV export row by row, for the converters of :mod:`recoverkit.datasets`: the reader
(header checked, every failure located at a file, line and column), the error it raises and the statistics it
counts, and the parsers of the cells the converters share.

:class:`DatasetError` and :class:`ConversionStats` are public as ``recoverkit.datasets.DatasetError`` and
``recoverkit.datasets.ConversionStats``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Final, Literal

from .errors import RecoverkitError
from .events import MAX_AMOUNT

__all__ = [
    "ConversionStats", "DatasetError", "OnError", "Reader", "RowError", "check_on_error", "decimal_price",
    "integer_id", "short_text", "text_id",
]  # fmt: skip

OnError = Literal["raise", "skip"]

#: Bound on the problem descriptions kept in :class:`ConversionStats`: a broken file must not fill memory
#: with messages; the counters still count every row.
MAX_PROBLEMS: Final = 20
_MAX_ID: Final = 256  # the event contract's limit on ids and short texts


class DatasetError(RecoverkitError, ValueError):
    """Raised by the dataset converters when a file or a row cannot be converted (with ``on_error="raise"``).

    The message names the file, the line and what was expected; ``path``, ``line``, ``column`` and ``value``
    carry the same facts for programs (``line`` is 1-based and counts the header; ``column`` and ``value``
    are ``None`` when the whole row or file is at fault).
    """

    def __init__(
        self,
        message: str,
        *,
        path: str,
        line: int | None = None,
        column: str | None = None,
        value: str | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
        self.column = column
        self.value = value


@dataclass
class ConversionStats:
    """What a converter read, produced and left out. Pass one as ``stats=`` and read it after iterating.

    ``incomplete`` rows are expected gaps in the data (the REES46 slice's truncated last row, rows without a
    session) and are dropped under either ``on_error``. ``skipped`` rows were malformed and left out because
    ``on_error="skip"``; ``problems`` describes the first few of them.
    """

    rows: int = 0
    events: int = 0
    incomplete: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)


class RowError(Exception):
    """A cell could not be converted; turned into a :class:`DatasetError` with the file and line."""

    def __init__(self, column: str, value: str, expected: str) -> None:
        super().__init__(column, value, expected)
        self.column = column
        self.value = value
        self.expected = expected


class Reader:
    """CSV rows as dicts, with the header checked and every failure located at a file and line."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        columns: tuple[str, ...],
        on_error: OnError,
        stats: ConversionStats,
    ) -> None:
        self.path = os.fspath(path)
        self.columns = columns
        self.on_error = on_error
        self.stats = stats

    def rows(self) -> Iterator[tuple[int, dict[str, str]]]:
        """Yield ``(line, row)`` for every data row that has all columns; count the rest as incomplete."""
        with open(self.path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or tuple(h.strip() for h in header[: len(self.columns)]) != self.columns:
                raise DatasetError(
                    f"{self.path}: line 1 is {','.join(header or [])!r}; expected the header "
                    f"{','.join(self.columns)!r}",
                    path=self.path,
                    line=1,
                )
            width = len(self.columns)
            for row in reader:
                if not row:
                    continue  # a blank line, typically the last one
                self.stats.rows += 1
                if len(row) > width:
                    self.fail(
                        reader.line_num, None, ",".join(row[width:]), f"{width} columns, got {len(row)}"
                    )
                    continue
                if len(row) < width:
                    # A row cut off by whoever sliced the file (REES46's last row): it lacks the session,
                    # so it cannot be placed in a session and is dropped like a row without one.
                    self.stats.incomplete += 1
                    continue
                yield reader.line_num, dict(zip(self.columns, row, strict=True))

    def fail(self, line: int, column: str | None, value: str, expected: str) -> None:
        """Raise or count a malformed row, depending on ``on_error``."""
        where = f"{self.path}, line {line}" + (f", column `{column}`" if column else "")
        shown = value if len(value) <= 60 else value[:57] + "..."
        message = f"{where}: got {shown!r}; expected {expected}"
        if self.on_error == "raise":
            raise DatasetError(message, path=self.path, line=line, column=column, value=value)
        self.stats.skipped += 1
        if len(self.stats.problems) < MAX_PROBLEMS:
            self.stats.problems.append(message)


def check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error={on_error!r}; expected 'raise' or 'skip'")


def text_id(row: dict[str, str], column: str) -> str:
    value = row[column].strip()
    if not 1 <= len(value) <= _MAX_ID:
        raise RowError(column, row[column], f"a non-empty id of at most {_MAX_ID} characters")
    return value


def integer_id(row: dict[str, str], column: str) -> str:
    try:
        return str(int(row[column]))
    except ValueError:
        raise RowError(column, row[column], "an integer id") from None


def decimal_price(row: dict[str, str], column: str) -> Decimal:
    # Decimal straight from the CSV text: a float would turn 35.79 into 35.78999999999999914735.
    try:
        price = Decimal(row[column])
    except InvalidOperation:
        raise RowError(column, row[column], "a decimal price such as 35.79") from None
    if not (price.is_finite() and 0 <= price <= MAX_AMOUNT):
        raise RowError(column, row[column], f"a finite price between 0 and {MAX_AMOUNT}")
    return price


def short_text(value: str) -> str | None:
    value = value.strip()
    return value[:_MAX_ID] if value else None
