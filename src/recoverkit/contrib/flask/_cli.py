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
Likewise, when the app has not configured structlog itself, the commands send recoverkit's log to standard
error (the worker from ``info`` up, the others from ``warning`` up), so that standard output carries only the
command's result (``export``'s JSON).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import click
import msgspec
import structlog
from flask import current_app
from flask.cli import AppGroup

from ...engine import Engine
from ...errors import ConfigError
from ...integration import IntegrationSettings
from ._state import app_state

__all__ = ["cli"]

T = TypeVar("T")
_HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None
_SECRET_BYTES = 32

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
    _log_to_stderr(logging.INFO)
    if settings.mode == "embedded":
        click.echo(
            "note: RECOVERKIT_MODE is 'embedded', so web processes may run the pipeline too; the store's lease "
            "lets one process at a time run it (set RECOVERKIT_MODE = 'journal' to leave it to this worker)",
            err=True,
        )
    elif settings.mode == "off":
        click.echo("note: RECOVERKIT_MODE is 'off': web processes record nothing for this worker to handle", err=True)
    try:
        engine = Engine(settings.config, **settings.engine_kwargs(pipeline=True))
    except ConfigError as exc:
        raise _ConfigProblem(str(exc)) from exc
    engine.close_timeout = settings.close_timeout
    anyio.run(_serve, engine, backend="asyncio", backend_options={"use_uvloop": _HAS_UVLOOP})
    click.echo("recoverkit worker: stopped", err=True)


async def _serve(engine: Engine) -> None:
    # The receiver is open before the engine starts, so a SIGTERM during start-up is not lost; it restores the
    # previous handlers when it closes.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with engine:
            click.echo(f"recoverkit worker: running the pipeline (pid {os.getpid()}); stop with SIGINT or SIGTERM",
                       err=True)
            async for signum in signals:
                click.echo(f"recoverkit worker: {signal.Signals(signum).name}: draining and stopping", err=True)
                break


@cli.command("check")
def check_command() -> None:
    """Validate recoverkit's settings and print the effective values (secrets are never printed)."""
    settings = app_state(current_app).settings
    lines, problems = _describe(settings)
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

    async def work(engine: Engine) -> bool:
        return await engine.forget(customer)

    if _maintenance(settings, work):
        click.echo("erased: the customer's carts, contact details, pending messages and dead letters are gone")
    else:
        click.echo("requested: a running engine holds this store; it erases the customer within seconds")


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
    """Run ``work(engine)`` on an engine on the shared store that sends nothing.

    If no process holds the pipeline lease this one takes it, restores the last checkpoint and reads the journal,
    so the whole state is at hand, and leaves a checkpoint behind (due messages stay scheduled for the shop's
    engine). If one does, this one only journals the request and the running engine carries it out.
    """
    _log_to_stderr(logging.WARNING)
    kwargs = settings.engine_kwargs(pipeline=True)
    kwargs["channels"] = None  # nothing is delivered; the shop's adapters stay untouched (and unclosed)

    async def run() -> T:
        try:
            engine = Engine(settings.config, deliver=False, **kwargs)
        except ConfigError as exc:
            raise _ConfigProblem(str(exc)) from exc
        async with engine:
            await engine.flush()
            return await work(engine)

    try:
        return anyio.run(run, backend="asyncio")
    except ValueError as exc:  # an empty customer id
        raise click.BadParameter(str(exc), param_hint="CUSTOMER") from exc


def _log_to_stderr(level: int) -> None:
    if structlog.is_configured():
        return  # the app configured its logging: leave it as it is
    structlog.configure(
        # sys.stderr looked up per logger, not now: a test runner swaps it per command.
        logger_factory=lambda *args: structlog.PrintLogger(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(level),
    )


def _require_shared_store(settings: IntegrationSettings, command: str) -> None:
    if settings.store is None and settings.config.store.path is None:
        raise _ConfigProblem(
            f"`flask recoverkit {command}` works on the store the web processes share, but "
            "app.config['RECOVERKIT_STORE'] is not set and the configuration has no [store] path: the state is "
            "in memory, inside each web process, where no command can reach it; expected the path of a SQLite file"
        )


# -- check --------------------------------------------------------------------------------------------------------


def _describe(settings: IntegrationSettings) -> tuple[list[str], list[str]]:
    """The effective settings as ``key: value`` lines, and the problems found. Never includes a secret's value."""
    config = settings.config
    problems: list[str] = []
    modes = {
        "embedded": "every web process runs the engine; with a shared store one at a time runs the pipeline",
        "journal": "web processes only journal; `flask recoverkit worker` runs the pipeline",
        "off": "nothing is recorded",
    }
    lines = [f"mode: {settings.mode} ({modes[settings.mode]})"]
    if settings.store is not None:
        store = settings.store
        lines.append(f"store: {os.fspath(store) if isinstance(store, (str, os.PathLike)) else type(store).__name__}")
    elif config.store.path is not None:
        lines.append(f"store: {config.store.path} (from the configuration)")
    else:
        lines.append("store: memory (each process its own, lost when it exits)")
    if settings.channels is None:
        lines.append("channels: console (the default: logs what would be sent)")
    else:
        named = ", ".join(f"{name}={type(adapter).__name__}" for name, adapter in sorted(settings.channels.items()))
        lines.append(f"channels: {named or 'none'}")
    for flow in config.flows:
        steps = ", ".join(f"{step.channel} after {step.delay:g} s" for step in flow.steps)
        lines.append(f"flow {flow.name}: {steps}")
    lines.append(f"abandoned after: {config.abandon_after:g} s without activity")
    for name in ("guard", "scorer", "coupons"):
        value = getattr(settings, name)
        lines.append(f"{name}: {type(value).__name__ if value is not None else 'default'}")
    paths = ", ".join(f"{path} -> {kind}" for path, kind in sorted(settings.checkout_paths.items()))
    lines.append(f"checkout paths: {paths or 'none'}")
    lines.append(f"page views: {'recorded' if settings.track_page_views else 'not recorded'}")
    secure = {None: "when the request is HTTPS", True: "always", False: "never"}[settings.cookie_secure]
    lines.append(f"session cookie: {settings.session_cookie} (HttpOnly, SameSite=Lax, Secure {secure})")
    if config.links.base_url is None:
        lines.append("restore links: off (no [links] base_url)")
    else:
        status = _secret_status(config.links.secret_env)
        lines.append(f"restore links: {config.links.base_url} (secret {config.links.secret_env}: {status})")
        if status != "set":
            problems.append(f"restore links need the environment variable {config.links.secret_env}: {status}")
    offers = config.code_offers()
    if offers:
        if settings.coupons is not None:
            lines.append(f"codes: {', '.join(offers)} (issued by {type(settings.coupons).__name__})")
        else:
            status = _secret_status(config.code_secret_env)
            lines.append(f"codes: {', '.join(offers)} (secret {config.code_secret_env}: {status})")
            if status != "set":
                problems.append(f"offers with codes need the environment variable {config.code_secret_env}: {status}")
    clock = type(settings.clock).__name__ if settings.clock is not None else "wall clock"
    lines.append(f"clock: {clock}")
    lines.append(f"close timeout: {settings.close_timeout:g} s")
    return lines, problems


def _secret_status(name: str) -> str:
    size = len(os.environ.get(name, "").encode())
    if size == 0:
        return "missing"
    if size < _SECRET_BYTES:
        return f"too short ({size} bytes; expected at least {_SECRET_BYTES})"
    return "set"
