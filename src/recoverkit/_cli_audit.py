"""``recoverkit audit``: the store's audit log, listed or exported; and how the other commands record their
actions in it (:func:`recording`).

::

    recoverkit audit STORE [--since WHEN] [--until WHEN] [--action A ...] [--customer ID] [--jsonl]

``STORE`` is a SQLite state file (never created) or a ``postgresql://`` URL. ``WHEN`` is epoch seconds or an ISO
8601 date or time (UTC unless it names its offset). ``--customer`` finds the records about a customer by the
store's keyed hash of the id (the log never holds the id). ``--jsonl`` exports the records as JSON lines, one
record a line with its seq and hashes, for an archive outside the store (docs/audit.md). The table never shows a
subject whole: a customer's hash is cut to 12 characters.

The commands that act on a store (``forget``, ``export``, ``ledger --resolve``, ``dead-letters resend``) record
each action, ``ok`` or ``failed``, as ``cli:<user>`` (``$RECOVERKIT_ACTOR`` names someone else) at the wall
clock's time; a ``--config`` they start an engine with is fingerprinted and a change recorded
(``config.changed``). An action whose record cannot be written fails the command (exit status 1), saying that
the action itself was done.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from ._cli_common import open_url, when
from ._cli_output import Out, Table, escape
from .audit import AuditOutcome, SubjectKind, cli_actor, note_config
from .clock import WallClock
from .config import load_config
from .errors import StoreError
from .store import SQLiteStore, is_store_url, store_label
from .store._audit import AuditEntry

__all__ = ["add_audit", "note_cli_config", "parse_when", "record_cli", "recording"]


def add_audit(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``audit`` command."""
    p = sub.add_parser("audit", help="list or export the audit log of a store (who did what, when, to what)")
    p.add_argument("store", metavar="STORE", help="the SQLite state file (store.path), or a postgresql:// URL")
    p.add_argument("--since", type=parse_when, help="records at or after this time (epoch seconds or ISO 8601)")
    p.add_argument("--until", type=parse_when, help="records before this time (epoch seconds or ISO 8601)")
    p.add_argument(
        "--action", action="extend", nargs="+", metavar="ACTION",
        help="only these actions (repeatable): forget, export, resend, resolve, config.changed, ...",
    )  # fmt: skip
    p.add_argument("--customer", help="only the records about this customer id (matched by its keyed hash)")
    p.add_argument("--jsonl", action="store_true", help="export the records as JSON lines, one record a line")
    p.set_defaults(func=_cmd_audit)


def parse_when(text: str) -> float:
    """``text`` as epoch seconds: a number, or an ISO 8601 date or time (UTC unless it names an offset)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected epoch seconds or an ISO 8601 date or time such as 2026-12-01 or 2026-12-01T09:30Z, got {text!r}"
        ) from None
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


@contextlib.contextmanager
def _open(where: str, command: str) -> Iterator[Any]:
    """The store at ``where`` (a file that must exist, or a URL), closed after use."""
    if is_store_url(where):
        with open_url(where, command) as store:
            yield store
        return
    path = Path(where)
    if not path.is_file():  # SQLiteStore would create it: a typo must not leave an empty store behind
        raise ValueError(f"{path}: no such file; expected an existing recoverkit store")
    with SQLiteStore(path) as store:
        yield store


def _cmd_audit(args: argparse.Namespace, console: Out, err: Out) -> int:
    with _open(args.store, "audit") as store:
        subject = None if args.customer is None else store.hash_contact(args.customer)
        records = store.audit_records(since=args.since, until=args.until, actions=args.action, subject=subject)
    if args.jsonl:
        out = sys.stdout.buffer
        for record in records:
            out.write(msgspec.json.encode(record) + b"\n")
        out.flush()
        return 0
    where = store_label(args.store) if is_store_url(args.store) else args.store
    console.print(f"{escape(where)}: {len(records)} audit record(s)", soft_wrap=True)
    if not records:
        return 0
    table = Table()
    for col in ("seq", "at (UTC)", "actor", "action", "subject", "outcome", "detail"):
        table.add_column(col)
    for r in records:
        subject_text = f"{r.subject_kind} {r.subject[:12] if r.subject_kind == 'customer' else r.subject}"
        table.add_row(str(r.seq), when(r.at), escape(r.actor), escape(r.action), escape(subject_text), r.outcome,
                      escape(r.detail[:80]))  # fmt: skip
    console.print(table)
    return 0


def record_cli(
    where: str, *, action: str, subject_kind: SubjectKind, subject: str, outcome: AuditOutcome, detail: str = ""
) -> None:
    """Append one action of this CLI to the audit log of the store at ``where`` (nothing when the file does not
    exist: no action reached a store then). Raises :class:`StoreError` when the record cannot be written."""
    if not is_store_url(where) and not Path(where).is_file():
        return
    entry = AuditEntry(actor=cli_actor(), action=action, subject_kind=subject_kind, subject=subject,
                       outcome=outcome, at=WallClock().now(), detail=detail)  # fmt: skip
    try:
        with _open(where, action) as store:
            store.append_audit(entry)
    except StoreError as exc:
        raise StoreError(
            f"{action} was carried out ({outcome}), but its audit record could not be written: {exc}"
        ) from exc


@contextlib.contextmanager
def recording(where: str, *, action: str, subject_kind: SubjectKind, subject: str) -> Iterator[dict[str, Any]]:
    """Record the action of the ``with`` block: ``failed`` (with the error's type) when it raises, else the
    ``outcome`` and ``detail`` the block leaves in the dict it is given (``ok`` and nothing by default)."""
    result: dict[str, Any] = {"outcome": "ok", "detail": ""}
    try:
        yield result
    except Exception as exc:
        record_cli(where, action=action, subject_kind=subject_kind, subject=subject, outcome="failed",
                   detail=type(exc).__name__)  # fmt: skip
        raise
    record_cli(where, action=action, subject_kind=subject_kind, subject=subject, outcome=result["outcome"],
               detail=result["detail"])  # fmt: skip


def note_cli_config(where: str, config_path: str | None) -> None:
    """At start-up of a command that runs an engine on the store at ``where`` with the configuration file
    ``config_path``: record ``config.changed`` when its fingerprint differs from the last one recorded there
    (nothing without a ``--config``, or when the store file does not exist)."""
    if config_path is None or (not is_store_url(where) and not Path(where).is_file()):
        return
    config = load_config(config_path)
    with _open(where, "config") as store:
        note_config(store, config, actor=cli_actor(), at=WallClock().now())
