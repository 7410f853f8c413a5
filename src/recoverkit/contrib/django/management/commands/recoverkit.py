"""``manage.py recoverkit``: the pipeline worker, a settings check, forget and export.

::

    python manage.py recoverkit worker              run the pipeline in the foreground until SIGINT or SIGTERM
    python manage.py recoverkit check               validate the settings and print the effective values (no secrets)
    python manage.py recoverkit forget CUSTOMER     erase a customer's personal data (right to erasure)
    python manage.py recoverkit export CUSTOMER     everything held about a customer, as JSON (right of access)

``worker``, ``forget`` and ``export`` work on the store the web processes share (``settings.RECOVERKIT["STORE"]``
or the config's ``[store] path``); with the state in memory, inside each web process, there is nothing they could
reach, and they say so. Exit status: 0 on success, 2 for a configuration or usage problem, 1 for other failures.

The commands run in the project's process and respect its ``LOGGING`` setting: recoverkit logs through the
standard :mod:`logging` module under the ``recoverkit`` logger (``recoverkit.engine``, ``recoverkit.dispatch``...).
Only when ``LOGGING`` says nothing that reaches recoverkit's records (no level, handler or ``propagate`` on the
``recoverkit`` logger, no handler on the root logger; Django's default configuration has none) do the commands
add a standard-error handler to the ``recoverkit`` logger, from ``info`` up for the worker and ``warning`` up for
the others. A ``LOGGING`` that silences ``recoverkit`` silences the commands' log too. Standard output carries
only the result (``export``'s JSON).
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from django.core.management.base import BaseCommand, CommandError  # type: ignore[import-untyped]

from recoverkit._integration_commands import (
    describe,
    erase_customer,
    erasure_report,
    log_to_stderr,
    maintenance,
    require_shared_store,
    serve,
)
from recoverkit.contrib.django._settings import SOURCE
from recoverkit.contrib.django._state import get_state
from recoverkit.engine import Engine
from recoverkit.errors import ConfigError
from recoverkit.integration import IntegrationSettings
from recoverkit.privacy import Erasure

_PROGRAM = "manage.py recoverkit"

__all__ = ["Command"]


class Command(BaseCommand):  # type: ignore[misc]
    """``manage.py recoverkit worker|check|forget CUSTOMER|export CUSTOMER``; see the module docs."""

    help = "recoverkit: the recovery pipeline worker, a settings check, forget and export."

    def add_arguments(self, parser: Any) -> None:
        actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
        actions.add_parser(
            "worker", help="run the recovery pipeline in the foreground until SIGINT or SIGTERM (for MODE 'journal')"
        )
        actions.add_parser("check", help="validate the settings and print the effective values (never a secret)")
        forget = actions.add_parser("forget", help="erase a customer's personal data (right to erasure)")
        forget.add_argument("customer", metavar="CUSTOMER", help="the shop's customer id")
        export = actions.add_parser("export", help="print everything held about a customer as JSON (right of access)")
        export.add_argument("customer", metavar="CUSTOMER", help="the shop's customer id")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            settings = get_state().settings
            if action == "check":
                self._check(settings)
            elif action == "worker":
                self._worker(settings)
            elif action == "forget":
                self._forget(settings, options["customer"])
            else:
                self._export(settings, options["customer"])
        except ConfigError as exc:
            raise CommandError(str(exc), returncode=2) from exc

    def _check(self, settings: IntegrationSettings) -> None:
        lines, problems = describe(settings, program=_PROGRAM)
        for line in lines:
            self.stdout.write(line)
        if problems:
            raise CommandError("; ".join(problems), returncode=2)
        self.stdout.write("ok")

    def _worker(self, settings: IntegrationSettings) -> None:
        require_shared_store(settings, "worker", program=_PROGRAM, store_setting=f"{SOURCE}['STORE']")
        log_to_stderr(logging.INFO)
        if settings.mode == "embedded":
            self.stderr.write(
                "note: settings.RECOVERKIT['MODE'] is 'embedded', so web processes may run the pipeline too; the "
                "store's lease lets one process at a time run it (set MODE = 'journal' to leave it to this worker)"
            )
        elif settings.mode == "off":
            self.stderr.write("note: settings.RECOVERKIT['MODE'] is 'off': web processes record nothing for this "
                              "worker to handle")
        # This process's own engine (built by ready(), never started) would only compete with the worker's.
        get_state().engine.close()
        serve(settings, self.stderr.write)
        self.stderr.write("recoverkit worker: stopped")

    def _forget(self, settings: IntegrationSettings, customer: str) -> None:
        require_shared_store(settings, "forget", program=_PROGRAM, store_setting=f"{SOURCE}['STORE']")

        async def work(engine: Engine) -> Erasure:
            return await erase_customer(engine, customer)

        # Exactly what went where (recoverkit.privacy.Erasure); a non-zero exit when anything was left.
        lines, complete = erasure_report(settings, self._maintenance(settings, work))
        for line in lines:
            self.stdout.write(line)
        if not complete:
            raise CommandError("the erasure is not complete: see the lines marked LEFT or NOT above", returncode=1)

    def _export(self, settings: IntegrationSettings, customer: str) -> None:
        require_shared_store(settings, "export", program=_PROGRAM, store_setting=f"{SOURCE}['STORE']")

        async def work(engine: Engine) -> dict[str, Any]:
            exported: dict[str, Any] = engine.export(customer)
            return exported

        exported = self._maintenance(settings, work)
        self.stdout.write(msgspec.json.format(msgspec.json.encode(exported)).decode())

    def _maintenance(self, settings: IntegrationSettings, work: Any) -> Any:
        log_to_stderr(logging.WARNING)
        try:
            return maintenance(settings, work)
        except ValueError as exc:  # an empty customer id (ConfigError, also a ValueError, is handled in handle())
            if isinstance(exc, ConfigError):
                raise
            raise CommandError(f"CUSTOMER: {exc}", returncode=2) from exc
