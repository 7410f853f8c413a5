"""What the framework commands (``manage.py recoverkit ...``, ``flask recoverkit ...``) do, apart from their
framework's command plumbing: describe the settings, run the pipeline worker, and run maintenance (forget,
export) on the shared store.

Errors are :class:`ConfigError` or ``ValueError`` for the command to turn into its exit status. ``program`` is
how the operator types the command group (``"manage.py recoverkit"``, ``"flask recoverkit"``): messages name it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio

from . import _log
from .engine import Engine
from .errors import ConfigError
from .integration import IntegrationSettings
from .privacy import Erasure, erase, finish_erasure
from .store import is_store_url, store_label

__all__ = ["describe", "log_to_stderr", "maintenance", "require_shared_store", "secret_status", "serve"]

T = TypeVar("T")
_HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None
_SECRET_BYTES = 32


def require_shared_store(settings: IntegrationSettings, command: str, *, program: str, store_setting: str) -> None:
    """Raise :class:`ConfigError` unless the settings name a store file other processes can reach;
    ``store_setting`` is how the shop spells the store setting (``settings.RECOVERKIT['STORE']``)."""
    if settings.plugins.store is None and settings.config.store.path is None:
        raise ConfigError(
            f"`{program} {command}` works on the store the web processes share, but {store_setting} "
            "is not set and the configuration has no [store] path: the state is in memory, inside each web "
            "process, where no command can reach it; expected the path of a SQLite file"
        )


def serve(settings: IntegrationSettings, say: Callable[[str], None]) -> None:
    """Run the pipeline in the foreground, on this thread's own event loop, until SIGINT or SIGTERM; then drain
    what was accepted and finish deliveries in flight (at most ``CLOSE_TIMEOUT`` seconds). ``say`` reports
    progress to the operator (one line each)."""
    engine = settings.new_engine(pipeline=True)  # its errors name the settings, as at the web processes' start-up

    async def run() -> None:
        # The receiver is open before the engine starts, so a SIGTERM during start-up is not lost; it puts the
        # previous handlers back when it closes. A management command is its process's main program: only here
        # does recoverkit handle signals.
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with engine:
                say(f"recoverkit worker: running the pipeline (pid {os.getpid()}); stop with SIGINT or SIGTERM")
                async for signum in signals:
                    say(f"recoverkit worker: {signal.Signals(signum).name}: draining and stopping")
                    break

    anyio.run(run, backend="asyncio", backend_options={"use_uvloop": _HAS_UVLOOP})


def maintenance(settings: IntegrationSettings, work: Callable[[Engine], Awaitable[T]]) -> T:
    """Run ``work(engine)`` on an engine on the shared store that sends nothing.

    If no process holds the pipeline lease this one takes it, restores the last checkpoint and reads the journal,
    so the whole state is at hand, and leaves a checkpoint behind (due messages stay scheduled for the shop's
    engine). If one does, this one only journals the request and the running engine carries it out.
    """
    # Nothing is delivered: the shop's adapters stay untouched (and unclosed).
    plugins = dataclasses.replace(settings.plugins, channels=None)
    engine = Engine(settings.config, plugins=plugins, pipeline=True, deliver=False)

    async def run() -> T:
        async with engine:
            await engine.flush()
            return await work(engine)

    return anyio.run(run, backend="asyncio")


async def erase_customer(engine: Engine, customer: str) -> Erasure:
    """The ``forget`` command's work, for :func:`maintenance`: see :func:`recoverkit.privacy.erase`."""
    return await erase(engine, customer)


def erasure_report(settings: IntegrationSettings, erasure: Erasure) -> tuple[list[str], bool]:
    """Finish a forget run by :func:`maintenance` (scrub the store file) and say exactly what was erased.

    Returns the report's lines (no customer data in them) and whether it is complete: ``False`` when something
    was still found after the forget or the file's write-ahead log could not be truncated (the command then exits
    non-zero). The framework integrations keep dead letters in the store, so there is no dead-letter file to
    rewrite and the report leaves that line out.
    """
    store = settings.plugins.store
    path: str | Path | None
    if isinstance(store, (str, os.PathLike)):
        path = Path(store)
    else:
        path = getattr(store, "path", None)  # an SQLiteStore the shop built; other stores have no file to scrub
    erasure = finish_erasure(erasure, store=path, dead_letters=None)
    lines = [line for line in erasure.lines() if not line.lstrip().startswith("dead-letter file:")]
    return lines, erasure.complete or not erasure.carried_out


def log_to_stderr(level: int) -> bool:
    """Send recoverkit's records to standard error from ``level`` up, unless the host process configured where
    they go; ``True`` if it did.

    A framework command runs inside the shop's process, after the framework applied the shop's logging
    configuration (Django's ``LOGGING``, a ``dictConfig`` in the Flask app factory): if that configuration says
    anything about recoverkit's records (a level, a handler or ``propagate`` on the ``recoverkit`` logger, or a
    handler on an ancestor such as the root logger), it is respected and nothing is added. Otherwise a handler
    for the current ``sys.stderr`` goes on the ``recoverkit`` logger alone, never on the root logger and never
    to standard output, which carries the command's result (``export``'s JSON).
    """
    return _log.log_to_stderr(level, unless_configured=True)


def describe(settings: IntegrationSettings, *, program: str) -> tuple[list[str], list[str]]:
    """The effective settings as ``key: value`` lines, and the problems found. Never includes a secret's value."""
    config = settings.config
    modes = {
        "embedded": "every web process runs the engine; with a shared store one at a time runs the pipeline",
        "journal": f"web processes only journal; `{program} worker` runs the pipeline",
        "off": "nothing is recorded",
    }
    lines = [f"mode: {settings.mode} ({modes[settings.mode]})", _store_line(settings), _channels_line(settings)]
    for flow in config.flows:
        steps = ", ".join(f"{step.channel} after {step.delay:g} s" for step in flow.steps)
        lines.append(f"flow {flow.name}: {steps}")
    lines.append(f"abandoned after: {config.abandon_after:g} s without activity")
    for name in ("guard", "scorer", "coupons", "catalogue", "loyalty", "rates"):
        value: Any = getattr(settings, name)
        lines.append(f"{name}: {type(value).__name__ if value is not None else 'default'}")
    paths = ", ".join(f"{path} -> {kind}" for path, kind in sorted(settings.checkout_paths.items()))
    lines.append(f"checkout paths: {paths or 'none'}")
    lines.append(f"page views: {'recorded' if settings.track_page_views else 'not recorded'}")
    secure = {None: "when the request is HTTPS", True: "always", False: "never"}[settings.cookie_secure]
    lines.append(f"session cookie: {settings.session_cookie} (HttpOnly, SameSite=Lax, Secure {secure})")
    secret_lines, problems = _secret_lines(settings)
    lines += secret_lines
    clock = type(settings.plugins.clock).__name__ if settings.plugins.clock is not None else "wall clock"
    lines.append(f"clock: {clock}")
    lines.append(f"close timeout: {settings.close_timeout:g} s")
    return lines, problems


def _store_line(settings: IntegrationSettings) -> str:
    store = settings.plugins.store
    if store is not None:
        return f"store: {_shown(store) if isinstance(store, (str, os.PathLike)) else type(store).__name__}"
    if settings.config.store.path is not None:
        return f"store: {_shown(settings.config.store.path)} (from the configuration)"
    return "store: memory (each process its own, lost when it exits)"


def _shown(path: str | os.PathLike[str]) -> str:
    """A store as ``check`` prints it: a file's path as given, a PostgreSQL URL without its password (the
    output lands in terminals, CI logs and support tickets)."""
    text = os.fspath(path)
    return store_label(text) if is_store_url(text) else text


def _channels_line(settings: IntegrationSettings) -> str:
    channels = settings.plugins.channels
    if channels is None:
        return "channels: console (the default: logs what would be sent)"
    named = ", ".join(f"{name}={type(adapter).__name__}" for name, adapter in sorted(channels.items()))
    return f"channels: {named or 'none'}"


def _secret_lines(settings: IntegrationSettings) -> tuple[list[str], list[str]]:
    """The lines of what needs a secret (restore links, codes), and the problems of the secrets not set."""
    config = settings.config
    lines: list[str] = []
    problems: list[str] = []
    if config.links.base_url is None:
        lines.append("restore links: off (no [links] base_url)")
    else:
        status = secret_status(config.links.secret_env)
        lines.append(f"restore links: {config.links.base_url} (secret {config.links.secret_env}: {status})")
        if status != "set":
            problems.append(f"restore links need the environment variable {config.links.secret_env}: {status}")
    offers = config.code_offers()
    if offers and settings.plugins.coupons is not None:
        lines.append(f"codes: {', '.join(offers)} (issued by {type(settings.plugins.coupons).__name__})")
    elif offers:
        status = secret_status(config.code_secret_env)
        lines.append(f"codes: {', '.join(offers)} (secret {config.code_secret_env}: {status})")
        if status != "set":
            problems.append(f"offers with codes need the environment variable {config.code_secret_env}: {status}")
    return lines, problems


def secret_status(name: str) -> str:
    """Whether the environment variable ``name`` holds a usable secret: ``"set"``, ``"missing"`` or why not."""
    size = len(os.environ.get(name, "").encode())
    if size == 0:
        return "missing"
    if size < _SECRET_BYTES:
        return f"too short ({size} bytes; expected at least {_SECRET_BYTES})"
    return "set"
