"""The ``flask recoverkit`` commands, registered on ``app.cli`` by :meth:`Recoverkit.init_app`.

::

    flask recoverkit worker              run the pipeline in the foreground until SIGINT or SIGTERM
    flask recoverkit check               validate the settings and print the effective values (no secrets)
    flask recoverkit forget CUSTOMER     erase a customer's personal data (right to erasure)
    flask recoverkit export CUSTOMER     everything held about a customer, as JSON (right of access)

``worker``, ``forget`` and ``export`` work on the store the web processes share (``RECOVERKIT_STORE`` or the
config's ``[store] path``); with the state in memory, inside each web process, there is nothing they could
reach, and they say so. Exit status: 0 on success, 2 for a configuration problem, 1 for other failures.

The worker is its process's main program, so it, and only it, handles SIGINT and SIGTERM: it stops taking
new work, drains what was accepted, finishes deliveries in flight (at most ``CLOSE_TIMEOUT`` seconds) and exits.
The commands run in the app's process and respect its logging configuration: recoverkit logs through the
standard :mod:`logging` module under the ``recoverkit`` logger, so a ``logging.config.dictConfig`` done before the
app is created (what Flask's documentation recommends) decides what is shown. Only when nothing is configured
for recoverkit's records (no level, handler or ``propagate`` on the ``recoverkit`` logger, no handler on the root
logger; Flask's own ``app.logger`` handler does not receive them) do the commands add a standard-error handler to
the ``recoverkit`` logger, from ``info`` up for the worker and ``warning`` up for the others; standard output
carries only the command's result (``export``'s JSON).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import msgspec
from flask import current_app
from flask.cli import AppGroup

from ..._integration_commands import (
    describe,
    erase_customer,
    erasure_report,
    log_to_stderr,
    maintenance,
    require_shared_store,
    serve,
)
from ...engine import Engine
from ...errors import ConfigError
from ...integration import IntegrationSettings
from ...privacy import Erasure
from ._state import app_state

__all__ = ["cli"]

T = TypeVar("T")
_HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None

cli = AppGroup("recoverkit", help="recoverkit: the recovery worker, a settings check, forget and export.")


class _ConfigProblem(click.ClickException):
    """A configuration problem: exit status 2, as the ``recoverkit`` command uses for them."""

    exit_code = 2


@cli.command("worker")
def worker_command() -> None:
    """Run the recovery pipeline in the foreground until SIGINT or SIGTERM.

    For RECOVERKIT_MODE = "journal": the web processes only journal events into the shared store and this
    process detects abandoned carts and sends the messages.
    """
    settings = app_state(current_app).settings
    _require_shared_store(settings, "worker")
    log_to_stderr(logging.INFO)
    if settings.mode == "embedded":
        click.echo(
            "note: RECOVERKIT_MODE is 'embedded', so web processes may run the pipeline too; the store's lease "
            "lets one process at a time run it (set RECOVERKIT_MODE = 'journal' to leave it to this worker)",
            err=True,
        )
    elif settings.mode == "off":
        click.echo("note: RECOVERKIT_MODE is 'off': web processes record nothing for this worker to handle", err=True)
    try:
        serve(settings, lambda line: click.echo(line, err=True))
    except ConfigError as exc:
        raise _ConfigProblem(str(exc)) from exc
    click.echo("recoverkit worker: stopped", err=True)


@cli.command("check")
def check_command() -> None:
    """Validate recoverkit's settings and print the effective values (secrets are never printed)."""
    settings = app_state(current_app).settings
    lines, problems = describe(settings, program="flask recoverkit")
    for line in lines:
        click.echo(line)
    if problems:
        raise _ConfigProblem("; ".join(problems))
    click.echo("ok")


@cli.command("forget")
@click.argument("customer")
def forget_command(customer: str) -> None:
    """Erase CUSTOMER's personal data: carts, contact details, pending messages, dead letters."""
    settings = app_state(current_app).settings
    _require_shared_store(settings, "forget")

    async def work(engine: Engine) -> Erasure:
        return await erase_customer(engine, customer)

    # Exactly what went where (recoverkit.privacy.Erasure); a non-zero exit when anything was left.
    lines, complete = erasure_report(settings, _maintenance(settings, work))
    for line in lines:
        click.echo(line)
    if not complete:
        raise click.ClickException("the erasure is not complete: see the lines marked LEFT or NOT above")


@cli.command("export")
@click.argument("customer")
def export_command(customer: str) -> None:
    """Print everything held about CUSTOMER as JSON (right of access)."""
    settings = app_state(current_app).settings
    _require_shared_store(settings, "export")

    async def work(engine: Engine) -> dict[str, Any]:
        return engine.export(customer)

    exported = _maintenance(settings, work)
    click.echo(msgspec.json.format(msgspec.json.encode(exported)).decode())


def _maintenance(settings: IntegrationSettings, work: Callable[[Engine], Awaitable[T]]) -> T:
    """:func:`recoverkit._integration_commands.maintenance`, its errors made click's."""
    log_to_stderr(logging.WARNING)
    try:
        return maintenance(settings, work)
    except ConfigError as exc:
        raise _ConfigProblem(str(exc)) from exc
    except ValueError as exc:  # an empty customer id
        raise click.BadParameter(str(exc), param_hint="CUSTOMER") from exc


def _require_shared_store(settings: IntegrationSettings, command: str) -> None:
    try:
        require_shared_store(
            settings, command, program="flask recoverkit", store_setting="app.config['RECOVERKIT_STORE']"
        )
    except ConfigError as exc:
        raise _ConfigProblem(str(exc)) from exc
