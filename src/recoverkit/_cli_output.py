"""How the ``recoverkit`` command writes: whole plain lines for pipes and logs, rich only on a terminal.

Guarantees:

- A stream that is not a terminal gets plain text: no colour or escape codes, no markup, and nothing wrapped:
  a message is one line however long its paths, and a table is aligned text with one line per row. A log
  collector, ``grep`` or a test sees whole lines.
- :meth:`Out.error` writes one line, ``error: ...``, whatever the stream; on a terminal the prefix is red.
- On a terminal, with rich installed, text is rendered as rich markup and tables are fitted to the width.
- rich is imported only when something is printed to a terminal, so importing the CLI does not import it;
  without rich a terminal gets the same plain text as a pipe.
- :class:`Ticker` writes a progress line every few seconds on stderr when stderr is not a terminal, for work
  that lasts longer than that; nothing otherwise.

Text passed to :meth:`Out.print` is rich markup (``"[bold]x[/]"``); values taken from data go through
:func:`escape` first, so that a ``[/x]`` in a file name stays text on a terminal and in plain output alike.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Any, Literal

from .errors import ConfigError

if TYPE_CHECKING:
    from types import TracebackType

    from rich.console import Console

__all__ = ["Out", "Table", "Ticker", "as_out", "escape", "strip_markup"]

Justify = Literal["left", "right"]

# rich's own patterns (rich.markup): a tag is "[" + a lower-case letter, "#", "/" or "@" + anything up to "]",
# escaped by an odd number of backslashes before it. Kept identical so that both renderings agree.
_TAG = re.compile(r"((\\*)\[([a-z#/@][^[]*?)])")
_ESCAPABLE = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")

#: The environment variable that sets the seconds between progress lines (0 turns them off).
PROGRESS_INTERVAL_ENV = "RECOVERKIT_PROGRESS_INTERVAL"
#: Seconds between progress lines, and before the first: work shorter than this prints none.
DEFAULT_PROGRESS_INTERVAL = 10.0


def escape(text: str) -> str:
    """``text`` made safe to put in markup: what would read as a tag is escaped (as ``rich.markup.escape``)."""
    text = _ESCAPABLE.sub(lambda m: f"{m[1]}{m[1]}\\{m[2]}", text)
    if text.endswith("\\") and not text.endswith("\\\\"):
        return text + "\\"  # else a tag after it in the same string would read as escaped
    return text


def strip_markup(markup: str) -> str:
    """The text rich would show for ``markup``, without its styles (tags dropped, escapes undone)."""
    if "[" not in markup:
        return markup
    parts: list[str] = []
    position = 0
    for match in _TAG.finditer(markup):
        full, backslashes, _ = match.groups()
        parts.append(markup[position : match.start()])
        pairs, escaped = divmod(len(backslashes), 2)
        parts.append("\\" * pairs)
        if escaped:
            parts.append(full[len(backslashes) :])
        position = match.end()
    parts.append(markup[position:])
    return "".join(parts)


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream: treat as a file
        return False


class Table:
    """A table to print with :meth:`Out.print`: rich's on a terminal, aligned plain text elsewhere.

    Cells are markup, as :meth:`Out.print` text is.
    """

    def __init__(self, title: str | None = None) -> None:
        self.title = title
        self.columns: list[tuple[str, Justify, bool]] = []
        self.rows: list[tuple[str, ...]] = []

    def add_column(self, header: str, *, justify: Justify = "left", no_wrap: bool = False) -> None:
        """Add a column; ``no_wrap`` keeps its cells on one line on a terminal (plain output never wraps)."""
        self.columns.append((header, justify, no_wrap))

    def add_row(self, *cells: str) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"a row of {len(cells)} cells; expected {len(self.columns)}, one per column")
        self.rows.append(cells)

    def plain(self) -> list[str]:
        """The table as aligned lines of text: the title, the headers, a rule, then one line per row."""
        rows = [[_one_line(strip_markup(cell)) for cell in row] for row in self.rows]
        headers = [header for header, _, _ in self.columns]
        widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
        justify = [j for _, j, _ in self.columns]

        def line(cells: Sequence[str]) -> str:
            columns = zip(cells, widths, justify, strict=True)
            return "  ".join(c.rjust(w) if j == "right" else c.ljust(w) for c, w, j in columns).rstrip()

        lines = [] if self.title is None else [strip_markup(self.title)]
        lines += [line(headers), line(["-" * w for w in widths])]
        lines += [line(r) for r in rows]
        return lines

    def rich(self) -> Any:
        """The table as a ``rich.table.Table`` (imports rich)."""
        from rich.table import Table as RichTable

        table = RichTable(title=self.title, show_edge=False)
        for header, justify, no_wrap in self.columns:
            table.add_column(header, justify=justify, no_wrap=no_wrap, overflow="fold")
        for row in self.rows:
            table.add_row(*row)
        return table


class Out:
    """One output stream of the CLI (stdout or stderr); see the module's guarantees.

    ``rich_console``, when given, is used as is (for callers of the public ``print_report`` functions that
    pass their own rich console); otherwise one is made on ``file`` the first time a terminal needs it.
    ``terminal`` overrides what ``file.isatty()`` says; ``width`` is the least width of a terminal rendering
    (rich may draw past a narrower terminal).
    """

    def __init__(
        self, file: IO[str] | None = None, *, stderr: bool = False, width: int | None = None,
        terminal: bool | None = None, rich_console: Console | None = None,
    ) -> None:  # fmt: skip
        self.file: IO[str] = file if file is not None else (sys.stderr if stderr else sys.stdout)
        self.width = width
        self._console: Console | None = rich_console
        self._looked = rich_console is not None  # for rich: looked once, whether found or not
        if terminal is None:
            terminal = rich_console.is_terminal if rich_console is not None else _isatty(self.file)
        self.is_terminal = terminal

    def widened(self, width: int) -> Out:
        """The same stream, rendered at least ``width`` columns wide on a terminal."""
        return Out(self.file, width=max(width, self.width or 0), terminal=self.is_terminal)

    def console(self) -> Console | None:
        """The rich console for this stream when it is a terminal and rich is installed, else ``None``."""
        if not self._looked and self.is_terminal:
            self._looked = True
            try:
                from rich.console import Console
            except ImportError:
                pass  # plain text, as for a pipe
            else:
                columns = shutil.get_terminal_size().columns
                width = max(self.width, columns) if self.width else None
                self._console = Console(file=self.file, width=width, force_terminal=True)
        return self._console

    def print(self, *objects: str | Table, soft_wrap: bool = False, markup: bool = True) -> None:
        """Print each of ``objects`` (markup text or a :class:`Table`), or an empty line when there are none.

        ``soft_wrap`` keeps text on one line on a terminal too (plain output is never wrapped).
        """
        console = self.console()
        if not objects:
            objects = ("",)
        for obj in objects:
            if console is not None:
                if isinstance(obj, Table):
                    console.print(obj.rich())
                else:
                    console.print(obj, soft_wrap=soft_wrap, markup=markup, highlight=False)
            elif isinstance(obj, Table):
                self.file.write("\n".join(obj.plain()) + "\n")
            else:
                self.file.write((strip_markup(obj) if markup else obj) + "\n")
        if console is None:
            self.file.flush()

    def error(self, message: str, *, kind: str = "error") -> None:
        """Write ``kind: message`` as one line; ``message`` is text (never markup), its line breaks spaces."""
        message = _one_line(message)
        console = self.console()
        if console is not None:
            console.print(f"[red]{kind}:[/] {escape(message)}", soft_wrap=True, highlight=False)
        else:
            self.file.write(f"{kind}: {message}\n")
            self.file.flush()


def as_out(console: Out | Console | None) -> Out:
    """``console`` as an :class:`Out`: a rich console is wrapped and used as is; ``None`` is stdout."""
    if console is None:
        return Out()
    if isinstance(console, Out):
        return console
    return Out(console.file, rich_console=console)


def progress_interval() -> float:
    """Seconds between progress lines, from ``RECOVERKIT_PROGRESS_INTERVAL`` (default 10; 0: no lines)."""
    raw = os.environ.get(PROGRESS_INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_PROGRESS_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):  # refuses NaN too
        raise ConfigError(
            f"{PROGRESS_INTERVAL_ENV}={raw!r}; expected seconds between progress lines (a number, 0 for none)"
        )
    return value


class Ticker:
    """Progress lines for long work on a stream that is not a terminal: ``label: <what>, 12.3 s``.

    Use it as a context manager around the work. A thread writes a line every ``interval`` seconds (by default
    from :func:`progress_interval`), the first after one interval, so work shorter than that prints nothing;
    ``what()`` says how far the work is (read from counters the work updates) and ``phase``, when set, is
    added to it. Nothing is written when the stream is a terminal (the command shows a bar there, or nothing),
    when ``enabled`` is false, or when the interval is 0.

    A thread rather than a clock check in the work's loop: it needs no hook in the library's loops, so it also
    covers loading and model fitting, and the work pays nothing for it.
    """

    def __init__(
        self, out: Out, label: str, what: Callable[[], str] | None = None, *, interval: float | None = None,
        enabled: bool = True,
    ) -> None:  # fmt: skip
        self.out = out
        self.label = label
        self.what = what
        self.phase: str | None = None
        self.interval = progress_interval() if interval is None else interval
        self.active = enabled and self.interval > 0 and not out.is_terminal
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0

    def line(self) -> str:
        """The progress line as it would be written now."""
        parts = [self.what() if self.what is not None else "", self.phase or ""]
        done = ", ".join(p for p in parts if p)
        elapsed = time.monotonic() - self._started
        return f"{self.label}: {done + ', ' if done else ''}{elapsed:.1f} s"

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.out.file.write(self.line() + "\n")
                self.out.file.flush()
            except (OSError, ValueError):  # stderr closed or gone: progress is not worth failing the work for
                return

    def __enter__(self) -> Ticker:
        self._started = time.monotonic()
        if self.active:
            self._thread = threading.Thread(target=self._run, name=f"recoverkit-{self.label}-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
