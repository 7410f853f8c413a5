"""``recoverkit db init|check|info URL``: the PostgreSQL store several hosts share (:mod:`recoverkit._cli_store`
hands a ``postgresql://`` URL here).

::

    recoverkit db init URL [--partitions N] [--schema S]   create the store's schema, or migrate it; idempotent
    recoverkit db check URL [--schema S] [--json]          problems in the stored data (exit status 1 if any)
    recoverkit db info URL [--schema S] [--json]           schema version, partitions: head, checkpoint, lag, owner

What is printed names the database as ``user@host:port/database``, never the URL (which may hold the password);
the store's errors do the same. Exit status 0 on success, 1 for problems found by ``check``, 2 with a one-line
message on stderr when the store cannot be used (the server, the schema, the psycopg extra).
"""

from __future__ import annotations

import argparse
import time

from ._cli_common import write_json
from ._cli_output import Out, Table, escape
from .errors import ConfigError, MissingExtraError, StoreError

__all__ = ["postgres_db"]


def postgres_db(args: argparse.Namespace, console: Out, err: Out) -> int:
    """Run ``db ACTION URL`` on the PostgreSQL store at ``args.path``."""
    try:
        if args.action == "init":
            return _init(args, console)
        if args.partitions is not None:
            err.error("db: --partitions is for init (the number is fixed when the store is created)")
            return 2
        return _check(args, console) if args.action == "check" else _info(args, console)
    except (StoreError, ConfigError, MissingExtraError) as exc:
        err.error(str(exc))
        return 2


def _init(args: argparse.Namespace, console: Out) -> int:
    from .store.postgres import PostgresStore, init

    info = init(args.path.strip(), partitions=args.partitions, schema=args.schema)
    with PostgresStore(args.path.strip(), schema=args.schema, pool_size=1) as store:
        where = store.where
    if args.json:
        write_json({"database": where, "schema": info.schema, "version": info.version, "partitions": info.partitions})
        return 0
    console.print(
        f"{escape(where)}: store in schema {escape(info.schema)} at version {info.version}, "
        f"{info.partitions} partition{'s' if info.partitions != 1 else ''}",
        soft_wrap=True,
    )
    return 0


def _check(args: argparse.Namespace, console: Out) -> int:
    from .store.postgres import PostgresStore

    with PostgresStore(args.path.strip(), schema=args.schema, pool_size=1) as store:
        where, problems = store.where, store.check()
    if args.json:
        write_json({"database": where, "schema": args.schema, "ok": not problems, "problems": problems})
    elif not problems:
        console.print(f"{escape(where)} schema {escape(args.schema)}: ok", soft_wrap=True)
    else:
        console.print(f"{escape(where)} schema {escape(args.schema)}: {len(problems)} problem(s)", soft_wrap=True)
        for problem in problems:
            console.print(f"  {escape(problem)}", soft_wrap=True)
    return 1 if problems else 0


def _info(args: argparse.Namespace, console: Out) -> int:
    from .store import PIPELINE_LEASE
    from .store.postgres import SCHEMA_VERSION, PostgresStore

    with PostgresStore(args.path.strip(), schema=args.schema, pool_size=1) as store:
        where, partitions, status = store.where, store.partitions, store.partition_status()
        # Today's engine processes a one-partition store under the pipeline lease, not a partition's lease.
        pipeline = store.lease_holder(PIPELINE_LEASE, now=time.time())
    if args.json:
        write_json(
            {"database": where, "schema": args.schema, "schema_version": SCHEMA_VERSION, "partitions": partitions,
             "pipeline_owner": pipeline, "status": status}
        )  # fmt: skip
        return 0
    owners = sorted({row.owner for row in status if row.owner is not None})
    console.print(
        f"{escape(where)} schema {escape(args.schema)}: version {SCHEMA_VERSION}, {partitions} "
        f"partition{'s' if partitions != 1 else ''}, {len(owners)} owner{'s' if len(owners) != 1 else ''}, "
        f"lag {sum(row.lag for row in status):,} events in all",
        soft_wrap=True,
    )
    console.print(f"pipeline lease: {'free' if pipeline is None else 'held by ' + escape(pipeline)}", soft_wrap=True)
    table = Table(title="partitions")
    for column in ("partition", "head", "checkpoint", "lag", "owner", "epoch"):
        table.add_column(column, justify="left" if column == "owner" else "right")
    for row in status:
        owner = "(free)" if row.owner is None else escape(row.owner)
        table.add_row(str(row.partition), f"{row.head:,}", f"{row.checkpoint:,}", f"{row.lag:,}", owner, str(row.epoch))
    console.print(table)
    return 0
