"""The privacy commands of the ``recoverkit`` CLI (:mod:`recoverkit.cli` registers them with :func:`add_forget`
and :func:`add_export`)::

    recoverkit forget PATH CUSTOMER [--dead-letters F]   erase a customer's personal data, say what went where
    recoverkit export PATH CUSTOMER          everything held about a customer, as JSON (right of access)

Both run an engine on the state file that sends nothing (see :func:`_maintenance`). ``PATH`` may be a
``postgresql://`` URL: a PostgreSQL store of one journal partition (a partitioned one is refused, saying why and
what to use instead); what is printed names it without its password.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import anyio
import msgspec

from ._cli_audit import note_cli_config, recording
from ._cli_common import config_from, open_url
from ._cli_output import Out, escape
from .store import is_store_url

__all__ = ["add_export", "add_forget"]


def add_forget(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("forget", help="erase a customer's personal data from a state file (right to erasure)")
    p.add_argument("store", metavar="STORE", help="the SQLite state file (store.path), or a postgresql:// URL")
    p.add_argument("customer", help="the customer id")
    p.add_argument("--config", help="TOML configuration file (its flows and store settings)")
    p.add_argument(
        "--dead-letters", metavar="FILE", help="the engine's dead-letter file (Engine(dead_letters=...)): erase it too"
    )
    p.set_defaults(func=_cmd_forget)


def add_export(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("export", help="print everything held about a customer as JSON (right of access)")
    p.add_argument("store", metavar="STORE", help="the SQLite state file (store.path), or a postgresql:// URL")
    p.add_argument("customer", help="the customer id")
    p.add_argument("--config", help="TOML configuration file (its flows and store settings)")
    p.set_defaults(func=_cmd_export)


async def _maintenance(args: argparse.Namespace, work: Any) -> Any:
    """Run ``work(engine)`` on an engine on the store that sends nothing.

    If no shop process holds the pipeline lease, this one takes it: it restores the last checkpoint and reads
    the journal, so the whole state is at hand, and leaves a checkpoint behind (due messages stay scheduled for
    the shop's engine). If a shop process holds it, this one only journals, and the shop's engine acts.
    """
    from .engine import Engine

    if is_store_url(args.store):
        instead = _INSTEAD[args.command]
        with open_url(args.store, args.command, one_pipeline=instead) as store:
            async with Engine(config_from(args.config), store=store, deliver=False) as engine:
                await engine.flush()
                return await work(engine)
    path = Path(args.store)
    if not path.exists():
        raise ValueError(f"{path}: no such state file; expected the store.path of a recoverkit engine")
    async with Engine(config_from(args.config), store=path, deliver=False) as engine:
        await engine.flush()
        return await work(engine)


#: What to use on a store of several partitions, which forget and export cannot run on yet (see open_url).
_INSTEAD = {
    "forget": "call `await engine.forget(customer_id)` in one of the shop's processes instead (it journals the "
    "erasure into every partition, and each partition's owner erases what it holds)",
    "export": "call `engine.export(customer_id)` in each of the shop's processes instead (each answers for the "
    "partitions it owns; what the store itself holds is in every answer)",
}


def _cmd_forget(args: argparse.Namespace, console: Out, err: Out) -> int:
    from .privacy import erase, finish_erasure

    async def work(engine: Any) -> Any:
        return await erase(engine, args.customer)

    note_cli_config(args.store, args.config)
    # Recorded in the store's audit log, ok only when the erasure was complete (the customer as a keyed hash).
    with recording(args.store, action="forget", subject_kind="customer", subject=args.customer) as audit:
        # Exactly what went where (see recoverkit.privacy.Erasure); exit status 1 when anything was left.
        erasure = anyio.run(_maintenance, args, work, backend="asyncio")
        # Scrubbing rewrites a SQLite file's free pages and WAL; PostgreSQL's own VACUUM reclaims its dead rows.
        file = None if is_store_url(args.store) else args.store
        erasure = finish_erasure(erasure, store=file, dead_letters=args.dead_letters)
        if not erasure.carried_out:
            audit.update(detail="journaled: the process holding the pipeline lease erases")
        elif not erasure.complete:
            audit.update(outcome="failed", detail="incomplete: something was left (see the command's output)")
    for line in erasure.lines(args.dead_letters):
        console.print(escape(line), soft_wrap=True)
    return 0 if erasure.complete or not erasure.carried_out else 1


def _cmd_export(args: argparse.Namespace, console: Out, err: Out) -> int:
    async def work(engine: Any) -> Any:
        return engine.export(args.customer)

    note_cli_config(args.store, args.config)
    with recording(args.store, action="export", subject_kind="customer", subject=args.customer):
        exported = anyio.run(_maintenance, args, work, backend="asyncio")
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(exported)).decode() + "\n")
    return 0
