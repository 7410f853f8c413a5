"""The store's commands of the ``recoverkit`` CLI (:mod:`recoverkit.cli` registers them with :func:`add_commands`).

::

    recoverkit ledger PATH [--state STATE ...] [--json]    list the dispatch ledger of a state file
    recoverkit ledger PATH --resolve KEY --as sent|retry   settle an "unknown" or "failed" entry

``ledger`` opens the file as a :class:`~recoverkit.store.SQLiteStore`, safely beside running workers (a
write waits for theirs), and migrates a file of an older recoverkit as any open does. It never creates a
file. ``--json`` prints the entries as one JSON document (with the times as epoch seconds). The contact and
cart keys (customer ids) are never printed, and what an error quotes of an address or a phone number is
replaced by ``***``. Exit status 0 on success; 2, with a one-line message on stderr, for a missing file, a key
not in the ledger or an entry in a state that cannot be resolved.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import msgspec

from ._cli_output import Out, Table, escape
from .errors import StoreError
from .store import LedgerState, Resolution, SQLiteStore

__all__ = ["add_commands", "redact"]

#: What an error column may quote that must not reach a terminal or a log: a provider's "550 no mailbox
#: alice@example.com", a phone number in international form.
_PERSONAL = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+|\+\d[\d ()./-]{5,}\d")
#: Errors are provider messages of any length; the table shows the start (the whole is in the file).
_ERROR_WIDTH = 80


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``ledger`` command on the CLI's subcommand parsers ``sub``."""
    p = sub.add_parser("ledger", help="list the dispatch ledger of a state file, or resolve an entry")
    p.add_argument("path", metavar="STORE_PATH", help="the SQLite state file (SQLiteStore)")
    p.add_argument(
        "--state",
        action="extend",
        nargs="+",
        choices=list(get_args(LedgerState)),
        metavar="STATE",
        help=f"list only entries in these states (repeatable): {', '.join(get_args(LedgerState))}",
    )
    p.add_argument("--resolve", metavar="KEY", help="settle the 'unknown' or 'failed' entry of this key")
    p.add_argument(
        "--as",
        dest="resolve_as",
        choices=list(get_args(Resolution)),
        help="with --resolve: 'sent' records it as sent; 'retry' deletes it so that the key can be claimed again",
    )
    p.add_argument("--json", action="store_true", help="print the entries (or the resolution) as one JSON document")
    p.set_defaults(func=_cmd_ledger)


def _when(ts: float | None) -> str:
    # cli.py has the same helper; importing it from there would make the two modules import each other.
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def redact(text: str) -> str:
    """``text`` with what looks like an email address or an international phone number replaced by ``***``."""
    return _PERSONAL.sub("***", text)


def _fail(err: Out, message: str) -> int:
    err.error(message)  # one line however long the path or key, for grep and for the exit contract
    return 2


def _write_json(document: object) -> None:
    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(document)) + b"\n")
    sys.stdout.buffer.flush()


def _cmd_ledger(args: argparse.Namespace, console: Out, err: Out) -> int:
    if args.resolve is None and args.resolve_as is not None:
        return _fail(err, "ledger: --as needs --resolve KEY")
    if args.resolve is not None and args.resolve_as is None:
        return _fail(err, "ledger: --resolve KEY needs --as sent or --as retry")
    if args.resolve is not None and args.state:
        return _fail(err, "ledger: --state lists entries and cannot be combined with --resolve")
    path = Path(args.path)
    if not path.is_file():  # SQLiteStore would create it: a typo must not leave an empty store behind
        return _fail(err, f"{path}: no such file; expected an existing recoverkit store")
    try:
        with SQLiteStore(path) as store:
            if args.resolve is not None:
                store.resolve(args.resolve, args.resolve_as)
            else:
                entries = store.ledger(args.state)
    except StoreError as exc:
        return _fail(err, str(exc))
    if args.resolve is not None and args.json:
        _write_json({"key": args.resolve, "resolved_as": args.resolve_as})
        return 0
    if args.resolve is not None:
        done = "recorded as sent" if args.resolve_as == "sent" else "deleted; the key can be claimed again"
        console.print(f"{escape(args.resolve)}: {done}", soft_wrap=True)
        return 0
    if args.json:
        rows = [
            {"key": e.key, "state": e.state, "channel": e.channel, "owner": e.owner, "started_at": e.started_at,
             "claimed_at": e.claimed_at, "finished_at": e.finished_at,
             "error": None if e.error is None else redact(e.error)}
            for e in entries
        ]  # fmt: skip
        _write_json({"path": str(path), "states": args.state, "entries": rows})
        return 0
    which = f" in state {', '.join(args.state)}" if args.state else ""
    count = f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'}"
    console.print(f"{escape(str(path))}: {count}{which}", soft_wrap=True)
    if not entries:
        return 0
    # Never the contact or cart keys (customer ids): key, state, channel, times and the redacted error suffice.
    table = Table()
    for col in ("key", "state", "channel", "claimed (UTC)", "error"):
        table.add_column(col)
    for entry in entries:
        error = "" if entry.error is None else redact(entry.error)[:_ERROR_WIDTH]
        table.add_row(escape(entry.key), entry.state, escape(entry.channel), _when(entry.claimed_at), escape(error))
    console.print(table)
    return 0
