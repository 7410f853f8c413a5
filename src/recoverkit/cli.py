"""The ``recoverkit`` command (also ``python -m recoverkit``).

::

    recoverkit demo                          replay the bundled sample and show what recoverkit would do
    recoverkit replay EVENTS [--config F] [--out F] [--json] [--store DB|URL [--resume]] [--model F]
    recoverkit bench [EVENTS] [--sessions N] [--json]
    recoverkit dead-letters list FILE|URL [--json]
    recoverkit dead-letters resend FILE|URL --webhook URL [--key KEY ...] [--store DB|URL]
    recoverkit check-config FILE
    recoverkit convert rees46|retailrocket CSV OUT
    recoverkit db check PATH                 integrity check of a state file (exit status 1 if problems)
    recoverkit db info PATH [--json]         schema version, rows per table, lease holders
    recoverkit ledger PATH|URL [--state S ...] [--json]   list ledger entries; --resolve KEY --as sent|retry settles one
    recoverkit forget PATH|URL CUSTOMER [--dead-letters F]   erase a customer's personal data, say what went where
    recoverkit export PATH|URL CUSTOMER      everything held about a customer, as JSON (right of access)
    recoverkit audit PATH|URL [--since T] [--until T] [--action A ...] [--customer ID] [--jsonl]   the audit log
    recoverkit report [--store DB|URL] [--events F] [--format table|json|html]   funnel, recovery, uplift
    recoverkit train EVENTS --out MODEL [--test-share S]   fit the conversion model on a shop's history
    recoverkit evaluate EVENTS --model MODEL                auROC, auPR, calibration of a model file

A ``postgresql://`` URL names a PostgreSQL store wherever a store path is taken (``docs/scaling.md``); what is
printed names it without its password. ``replay``, ``forget`` and ``export`` run a pipeline of their own and need
a store of one journal partition (a partitioned one is refused, saying what to use instead); ``ledger``,
``dead-letters`` and ``report`` read the store's own tables, on any number of partitions.

Exit status: 0 on success, 2 for usage and configuration errors, 1 for other failures. Messages on stdout,
diagnostics on stderr, each error one line (``error: ...``). Output that is not a terminal is plain text that is
never wrapped (see :mod:`recoverkit._cli_output`); long work (replay, convert, bench, report, train, evaluate)
then writes a progress line on stderr every ``RECOVERKIT_PROGRESS_INTERVAL`` seconds (default 10; 0: none),
where a terminal gets a progress bar (replay) or nothing.

The commands live by group in private modules, each registering its own: ``_cli_replay`` (demo, replay, bench,
convert), ``_cli_privacy`` (forget, export), ``_cli_store`` (ledger, db, dead-letters), ``_cli_templates``,
``_cli_report`` and ``_cli_train``; this module keeps ``check-config``, the parser and :func:`main`.
"""

from __future__ import annotations

import argparse
import logging
import zlib
from collections.abc import Sequence

from . import __version__
from ._cli_audit import add_audit
from ._cli_output import Out, escape
from ._cli_privacy import add_export, add_forget
from ._cli_replay import add_bench, add_convert, add_demo, add_replay
from ._cli_report import add_commands as add_report_commands
from ._cli_store import add_commands as add_ledger_commands
from ._cli_store import add_db, add_dead_letters
from ._cli_templates import add_commands as add_template_commands
from ._cli_train import add_commands as add_train_commands
from ._log import log_to_stderr
from .config import Config, load_config
from .errors import ConfigError, RecoverkitError

__all__ = ["main"]


def _cmd_check_config(args: argparse.Namespace, console: Out, err: Out) -> int:
    config = load_config(args.file)
    problems = _config_problems(config, args.file, secrets=not args.no_secrets)
    for problem in problems:
        err.error(problem, kind="configuration error")
    if problems:
        return 2
    flows = ", ".join(f.name for f in config.flows)
    console.print(f"{escape(args.file)}: ok ({len(config.flows)} flow(s): {flows})", soft_wrap=True)
    return 0


def _config_problems(config: Config, file: str, *, secrets: bool) -> list[str]:
    """What would stop an engine built from ``config`` that loading it does not catch, one message each.

    A channel the flows name that is neither built in nor declared under ``[channels.<name>]`` (most often a
    typo, which would otherwise become a channel of its own that no adapter serves), and, with ``secrets``,
    the secrets it reads from this environment.
    """
    from ._integration_commands import secret_status
    from .config import DEFAULT_CHANNELS, channel_paths

    problems: list[str] = []
    built_in = ", ".join(sorted(DEFAULT_CHANNELS))
    for name, paths in channel_paths(config).items():
        if name not in DEFAULT_CHANNELS and name not in config.channels:
            problems.append(
                f"{file}: `{paths[0]}` is {name!r}, which is neither a built-in channel ({built_in}) nor declared "
                f"under [channels.{name}]; expected one of those, or your own channel declared there (its adapter "
                "is passed to Engine(channels=...))"
            )
    if not secrets:
        return problems
    offers = config.code_offers()
    status = secret_status(config.code_secret_env)
    if offers and status != "set":
        problems.append(
            f"{file}: the offers {', '.join(offers)} carry codes, whose secret is read from the environment variable "
            f"{config.code_secret_env} (`code_secret_env`): {status}; expected a random secret of at least 32 "
            "bytes in every process that runs the engine, or --no-secrets if Engine(coupons=...) issues the codes"
        )
    if config.links.base_url is not None:
        status = secret_status(config.links.secret_env)
        if status != "set":
            problems.append(
                f"{file}: restore links (`links.base_url`) are signed with the secret in the environment variable "
                f"{config.links.secret_env} (`links.secret_env`): {status}; expected a random secret of at least 32 "
                "bytes, the same in every process that builds or verifies links"
            )
    return problems


_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recoverkit",
        description="Win back abandoned carts in real time.",
        epilog="Output that is not a terminal is plain text, never wrapped; an error is one line on stderr. Exit "
        "status: 0 on success, 2 for usage and configuration errors, 1 for other failures. Long work (replay, "
        "convert, bench, report, train, evaluate) writes a progress line on stderr when it is not a terminal, "
        "every RECOVERKIT_PROGRESS_INTERVAL seconds (default 10; 0: none).",
    )
    parser.add_argument("--version", action="version", version=f"recoverkit {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log engine activity to stderr (-vv: debug records too)"
    )
    parser.add_argument(
        "--log-level", choices=sorted(_LOG_LEVELS), help="log to stderr from this level up (default: warning)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each command group's module registers its commands; this order is the order of the help's list.
    for add in (add_demo, add_replay, add_forget, add_export, add_bench, add_dead_letters, _add_check_config,
                add_convert, add_db, add_ledger_commands, add_template_commands, add_report_commands,
                add_train_commands, add_audit):  # fmt: skip
        add(sub)
    return parser


def _add_check_config(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check-config",
        help="validate a TOML configuration file: its keys, the channels its flows name, and that the secrets it "
        "needs are set in this environment",
    )
    p.add_argument("file")
    p.add_argument(
        "--no-secrets", action="store_true", help="do not look for the secrets in the environment (codes, links)"
    )
    p.set_defaults(func=_cmd_check_config)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``recoverkit`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    # The CLI owns its process, so unlike the library it may configure logging: recoverkit's records to stderr
    # (stdout carries the commands' output), warnings and worse unless -v or --log-level; the root logger and
    # any other library's loggers are left alone.
    if args.log_level is not None:
        level = _LOG_LEVELS[args.log_level]
    else:
        level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    log_to_stderr(level, unless_configured=False)
    console = Out()
    err = Out(stderr=True)
    if args.command == "dead-letters" and args.action == "resend" and not args.webhook:
        parser.error("dead-letters resend needs --webhook URL")
    # err.error writes messages as text, one line each: they quote values from the user's files ("[/x]" there
    # is text), and a log or a test looks for them whole.
    try:
        return int(args.func(args, console, err))
    except ConfigError as exc:
        err.error(str(exc), kind="configuration error")
        return 2
    except (RecoverkitError, OSError, ValueError, EOFError, zlib.error) as exc:  # EOFError, zlib: a bad .gz
        err.error(str(exc))
        return 1
