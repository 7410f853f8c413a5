"""The commands of the ``recoverkit`` CLI that look at the engine's files: the state file and the dead letters
(:mod:`recoverkit.cli` registers them with :func:`add_commands`, :func:`add_db` and :func:`add_dead_letters`).

::

    recoverkit ledger PATH [--state STATE ...] [--json]    list the dispatch ledger of a state file
    recoverkit ledger PATH --resolve KEY --as sent|retry   settle an "unknown" or "failed" entry
    recoverkit db check PATH                 integrity check of a state file (exit status 1 if problems)
    recoverkit db info PATH [--json]         schema version, rows per table, lease holders
    recoverkit db init URL [--partitions N] [--schema S]   create or migrate a PostgreSQL store
    recoverkit db check URL / db info URL    the same for a PostgreSQL store (info: partitions, owners, lag)
    recoverkit dead-letters list FILE [--json]
    recoverkit dead-letters resend FILE --webhook URL [--key KEY ...] [--store DB|URL]

``ledger`` opens the file as a :class:`~recoverkit.store.SQLiteStore`, safely beside running workers (a
write waits for theirs), and migrates a file of an older recoverkit as any open does. It never creates a
file. Given a ``postgresql://`` URL, ``ledger`` and ``dead-letters`` work on that PostgreSQL store (its ledger and
its dead-letter table; any number of partitions: both are the store's, not a partition's), beside the running
hosts; what they print names the store without its password. ``--json`` prints the entries as one JSON document
(with the times as epoch seconds). The contact and cart keys (customer ids) are never printed, and what an error
quotes of an address or a phone number is replaced by ``***``. Exit status 0 on success; 2, with a one-line message on stderr, for a missing file, a key
not in the ledger or an entry in a state that cannot be resolved.

``db`` takes a ``postgresql://`` (or ``postgres://``) URL instead of a path for the store several hosts share
(``docs/scaling.md``): ``init`` creates its schema or migrates it (``--partitions``, fixed when it is created:
1 for today's engine), ``check`` and ``info`` read it. What they print and their errors name
``user@host:port/database``, never the password.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import anyio
import msgspec

from ._cli_common import open_url, when, write_json
from ._cli_output import Out, Table, escape
from .errors import StoreError
from .store import LedgerEntry, LedgerState, Resolution, SQLiteStore, is_store_url, store_label

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .deadletters import DeadLetter, DeadLetters
    from .store.base import DeadLetterStore

__all__ = ["add_commands", "add_db", "add_dead_letters", "redact"]

#: What an error column may quote that must not reach a terminal or a log: a provider's "550 no mailbox
#: alice@example.com", a phone number in international form.
_PERSONAL = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+|\+\d[\d ()./-]{5,}\d")
#: Errors are provider messages of any length; the table shows the start (the whole is in the file).
_ERROR_WIDTH = 80


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``ledger`` command on the CLI's subcommand parsers ``sub``."""
    p = sub.add_parser("ledger", help="list the dispatch ledger of a store, or resolve an entry")
    p.add_argument(
        "path", metavar="STORE_PATH_OR_URL", help="the SQLite state file (SQLiteStore), or a postgresql:// URL"
    )
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


def redact(text: str) -> str:
    """``text`` with what looks like an email address or an international phone number replaced by ``***``."""
    return _PERSONAL.sub("***", text)


def _fail(err: Out, message: str) -> int:
    err.error(message)  # one line however long the path or key, for grep and for the exit contract
    return 2


def _cmd_ledger(args: argparse.Namespace, console: Out, err: Out) -> int:
    problem = _ledger_usage(args)
    if problem is not None:
        return _fail(err, problem)
    url = is_store_url(args.path)
    path = Path(args.path)
    if not url and not path.is_file():  # SQLiteStore would create it: a typo must not leave an empty store behind
        return _fail(err, f"{path}: no such file; expected an existing recoverkit store")
    try:
        with open_url(args.path, "ledger") if url else SQLiteStore(path) as store:
            if args.resolve is not None:
                _resolve(store, args)
            else:
                entries = store.ledger(args.state)
    except StoreError as exc:
        return _fail(err, str(exc))
    if args.resolve is not None:
        _print_resolution(args, console)
    else:
        _print_ledger(args, store_label(args.path) if url else str(path), entries, console)
    return 0


def _resolve(store: Any, args: argparse.Namespace) -> None:
    """Settle the entry, and record it in the store's audit log: ``ok``, or ``failed`` with why (redacted)."""
    from .audit import cli_actor
    from .clock import WallClock
    from .store._audit import AuditEntry

    def record(outcome: Literal["ok", "failed"], detail: str) -> None:
        store.append_audit(
            AuditEntry(
                actor=cli_actor(),
                action="resolve",
                subject_kind="message",
                subject=args.resolve,
                outcome=outcome,
                at=WallClock().now(),
                detail=detail,
            )
        )

    try:
        store.resolve(args.resolve, args.resolve_as)
    except StoreError as exc:
        record("failed", redact(f"as {args.resolve_as}: {exc}")[:400])
        raise
    record("ok", f"as {args.resolve_as}")


def _ledger_usage(args: argparse.Namespace) -> str | None:
    """What is wrong with the combination of ``ledger``'s options, if anything."""
    if args.resolve is None and args.resolve_as is not None:
        return "ledger: --as needs --resolve KEY"
    if args.resolve is not None and args.resolve_as is None:
        return "ledger: --resolve KEY needs --as sent or --as retry"
    if args.resolve is not None and args.state:
        return "ledger: --state lists entries and cannot be combined with --resolve"
    return None


def _print_resolution(args: argparse.Namespace, console: Out) -> None:
    if args.json:
        write_json({"key": args.resolve, "resolved_as": args.resolve_as})
        return
    done = "recorded as sent" if args.resolve_as == "sent" else "deleted; the key can be claimed again"
    console.print(f"{escape(args.resolve)}: {done}", soft_wrap=True)


def _print_ledger(args: argparse.Namespace, where: str, entries: list[LedgerEntry], console: Out) -> None:
    if args.json:
        rows = [
            {"key": e.key, "state": e.state, "channel": e.channel, "owner": e.owner, "started_at": e.started_at,
             "claimed_at": e.claimed_at, "finished_at": e.finished_at,
             "error": None if e.error is None else redact(e.error)}
            for e in entries
        ]  # fmt: skip
        write_json({"path": where, "states": args.state, "entries": rows})
        return
    which = f" in state {', '.join(args.state)}" if args.state else ""
    count = f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'}"
    console.print(f"{escape(where)}: {count}{which}", soft_wrap=True)
    if not entries:
        return
    # Never the contact or cart keys (customer ids): key, state, channel, times and the redacted error suffice.
    table = Table()
    for col in ("key", "state", "channel", "claimed (UTC)", "error"):
        table.add_column(col)
    for entry in entries:
        error = "" if entry.error is None else redact(entry.error)[:_ERROR_WIDTH]
        table.add_row(escape(entry.key), entry.state, escape(entry.channel), when(entry.claimed_at), escape(error))
    console.print(table)


# -- db -------------------------------------------------------------------------------------------------------


def add_db(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``db`` command."""
    p = sub.add_parser(
        "db", help="look at a state file (SQLiteStore) without changing it; create or look at a PostgreSQL store"
    )
    p.add_argument(
        "action",
        choices=["check", "info", "init"],
        help="check: integrity; info: version, rows, leases (partitions, owners, lag); init: create or migrate a "
        "PostgreSQL store",
    )
    p.add_argument("path", metavar="PATH_OR_URL", help="the SQLite state file, or a postgresql:// URL")
    p.add_argument("--json", action="store_true", help="print what was found as one JSON document")
    p.add_argument(
        "--partitions",
        type=int,
        help="init: the journal's partitions when the store is created (default 1, what today's engine runs)",
    )
    p.add_argument("--schema", default="recoverkit", help="a PostgreSQL store's schema (default: recoverkit)")
    p.set_defaults(func=_cmd_db)


def _cmd_db(args: argparse.Namespace, console: Out, err: Out) -> int:
    # Read-only for a file: neither creates, migrates nor changes it, so it is safe beside running workers.
    # Paths and owners can be long: soft_wrap keeps each on one line for grep.
    from .store import check_database, describe_database, is_store_url

    if is_store_url(args.path):
        from ._cli_postgres import postgres_db

        return postgres_db(args, console, err)
    if args.action == "init" or args.partitions is not None or args.schema != "recoverkit":
        return _fail(err, "db: init, --partitions and --schema are for a PostgreSQL store (a postgresql:// URL)")
    if args.action == "check":
        return _print_check(args, check_database(args.path), console)
    info = describe_database(args.path)
    if args.json:
        write_json(info)
        return 0
    now = time.time()
    console.print(
        f"{escape(info.path)}: schema version {info.schema_version} (this recoverkit: {info.supported_version})",
        soft_wrap=True,
    )
    checkpoint = "none" if info.checkpoint_position is None else f"at seq {info.checkpoint_position:,}"
    console.print(f"journal: last seq {info.last_seq:,}; checkpoint {checkpoint}")
    table = Table(title="rows")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in info.rows.items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    if not info.leases:
        console.print("leases: none")
    for lease in info.leases:
        left = lease.expires_at - now
        state = f"expires in {left:.1f} s" if left > 0 else f"expired {-left:.1f} s ago"
        console.print(
            f"lease {escape(lease.name)}: held by {escape(lease.owner)}, {state} ({when(lease.expires_at)} UTC)",
            soft_wrap=True,
        )
    return 0


def _print_check(args: argparse.Namespace, problems: list[str], console: Out) -> int:
    if args.json:
        write_json({"path": args.path, "ok": not problems, "problems": problems})
        return 1 if problems else 0
    if not problems:
        console.print(f"{escape(args.path)}: ok", soft_wrap=True)
        return 0
    console.print(f"{escape(args.path)}: {len(problems)} problem(s)", soft_wrap=True)
    for problem in problems:
        console.print(f"  {escape(problem)}", soft_wrap=True)
    return 1


# -- dead letters ---------------------------------------------------------------------------------------------


def add_dead_letters(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``dead-letters`` command."""
    p = sub.add_parser("dead-letters", help="list or re-send dead letters")
    p.add_argument("action", choices=["list", "resend"], help="list: show the letters; resend: POST them again")
    p.add_argument(
        "file", metavar="FILE_OR_URL", help="the dead-letter file (Engine(dead_letters=...)), or a postgresql:// URL"
    )
    p.add_argument("--webhook", help="resend: POST each letter to this URL")
    p.add_argument("--key", action="append", help="resend only this key (repeatable)")
    p.add_argument(
        "--store", metavar="STORE",
        help="resend from a dead-letter file: the state file or postgresql:// URL whose audit log records each "
        "resend (a store's own dead letters are recorded in it)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="list: print the letters as one JSON document")
    p.set_defaults(func=_cmd_dead_letters)


def _cmd_dead_letters(args: argparse.Namespace, console: Out, err: Out) -> int:
    from .deadletters import DeadLetters

    if args.json and args.action != "list":
        err.error("dead-letters: --json is for list")
        return 2
    if is_store_url(args.file):
        with open_url(args.file, "dead-letters") as store:
            return _letters_command(args, StoreLetters(store, store_label(args.file)), console, err)
    if not Path(args.file).is_file():  # else a typo would list "0" letters as if all had gone well
        err.error(f"{args.file}: no such dead-letter file; expected the file given as Engine(dead_letters=...)")
        return 2
    return _letters_command(args, DeadLetters(args.file), console, err)


def _letters_command(args: argparse.Namespace, letters: DeadLetters | StoreLetters, console: Out, err: Out) -> int:
    if args.action == "list":
        _list_letters(args, letters, console)
        return 0
    return _resend(args, letters, console, err)


class StoreLetters:
    """The dead letters of a store (its :class:`~recoverkit.store.DeadLetterStore` table), read as the
    dead-letter file's :class:`~recoverkit.deadletters.DeadLetters` are: iterated, counted, marked re-sent."""

    def __init__(self, store: DeadLetterStore, label: str) -> None:
        from .channels.base import Message
        from .deadletters import DeadLetter

        self.label = label
        self._store = store
        self._letters: list[DeadLetter] = []
        for record in store.dead_letters():
            try:
                message = msgspec.json.decode(record.data, type=Message)
            except msgspec.DecodeError:
                raise StoreError(
                    f"{label}: the dead letter {record.key!r} does not hold a message this recoverkit can read"
                ) from None
            self._letters.append(
                DeadLetter(message=message, error=record.error, attempts=record.attempts, at=record.at,
                           permanent=record.permanent)
            )  # fmt: skip

    def __iter__(self) -> Iterator[DeadLetter]:
        return iter(self._letters)

    def __len__(self) -> int:
        return len(self._letters)

    def mark_resent(self, key: str) -> None:
        self._store.mark_resent(key)


def _list_letters(args: argparse.Namespace, letters: DeadLetters | StoreLetters, console: Out) -> None:
    # Never the recipient (personal data); an error may quote an address, so it is redacted too.
    where = letters.label if isinstance(letters, StoreLetters) else args.file
    if args.json:
        document = {
            "file": where,
            "letters": [
                {"key": letter.message.key, "channel": letter.message.channel, "attempts": letter.attempts,
                 "at": letter.at, "permanent": letter.permanent, "error": redact(letter.error)}
                for letter in letters
            ],
        }  # fmt: skip
        write_json(document)
        return
    table = Table(title=f"dead letters in {escape(where)}: {len(letters)}")
    for col in ("key", "channel", "attempts", "at (UTC)", "permanent", "error"):
        table.add_column(col)
    for letter in letters:
        m = letter.message
        table.add_row(escape(m.key), escape(m.channel), str(letter.attempts), when(letter.at),
                      str(letter.permanent), escape(redact(letter.error)[:80]))  # fmt: skip
    console.print(table)


def _record_resend(args: argparse.Namespace, key: str, outcome: Literal["ok", "failed"], detail: str) -> None:
    """A resend in the audit log of the store it came from (a URL), or of ``--store`` (a dead-letter file)."""
    from ._cli_audit import record_cli

    where = args.file if is_store_url(args.file) else args.store
    if where is not None:
        record_cli(where, action="resend", subject_kind="message", subject=key, outcome=outcome, detail=detail)


def _resend(args: argparse.Namespace, letters: DeadLetters | StoreLetters, console: Out, err: Out) -> int:
    """POST the letters (those of ``--key``, if given) to ``--webhook``; exit status 1 if any still fails."""
    from .channels.webhook import WebhookChannel

    channel = WebhookChannel(args.webhook)
    wanted = set(args.key or ())

    async def resend() -> tuple[int, int]:
        ok = failed = 0
        try:
            for letter in letters:
                if wanted and letter.message.key not in wanted:
                    continue
                try:
                    await channel.send(letter.message)
                except Exception as exc:
                    failed += 1
                    err.print(escape(f"{letter.message.key}: still failing: {redact(str(exc))}"), soft_wrap=True)
                    _record_resend(args, letter.message.key, "failed", type(exc).__name__)
                else:
                    ok += 1
                    letters.mark_resent(letter.message.key)
                    _record_resend(args, letter.message.key, "ok", "")
        finally:
            await channel.aclose()
        return ok, failed

    ok, failed = anyio.run(resend)
    console.print(f"re-sent {ok}, still failing {failed}")
    return 0 if not failed else 1
