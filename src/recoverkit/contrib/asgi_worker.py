"""``python -m recoverkit.contrib.asgi_worker MODULE:NAME``: the pipeline worker of an ASGI shop.

The ASGI counterpart of ``manage.py recoverkit worker`` and ``flask recoverkit worker``, for web processes in mode
``"journal"`` (they only journal events into the shared store). ``MODULE:NAME`` names the settings the middleware
is given (``RecoverkitMiddleware(app, settings=SETTINGS)``): a mapping of its keys, or an
:class:`~recoverkit.integration.IntegrationSettings`; ``MODULE`` is imported with the current directory on the
path, as uvicorn imports its app.

::

    python -m recoverkit.contrib.asgi_worker myshop.settings:RECOVERKIT

It runs the pipeline in the foreground until SIGINT or SIGTERM, then stops taking new work, journals and handles
what was accepted, finishes deliveries in flight (at most ``CLOSE_TIMEOUT`` seconds), writes a checkpoint, closes
the store and exits with status 0. This program owns its process, so it, and only it, handles those signals.
Exit status 2, with a one-line message, for a settings problem (the message names the setting); 1 for a store that
cannot be used. recoverkit's log goes to standard error from ``info`` up unless the process's logging configuration
already says where it goes.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from .._integration_commands import log_to_stderr, require_shared_store, serve
from ..errors import ConfigError, StoreError
from ..integration import IntegrationSettings

__all__ = ["main"]

_PROGRAM = "python -m recoverkit.contrib.asgi_worker"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the worker (see the module docs); the process's exit status."""
    parser = argparse.ArgumentParser(prog=_PROGRAM, description="Run recoverkit's pipeline until SIGINT or SIGTERM.")
    parser.add_argument("settings", metavar="MODULE:NAME", help="the middleware's settings, e.g. myshop.settings:RK")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    module_name, _, name = str(args.settings).partition(":")
    if not module_name or not name:
        say(f"{_PROGRAM}: expected MODULE:NAME (the settings of RecoverkitMiddleware), got {args.settings!r}")
        return 2
    sys.path.insert(0, os.getcwd())
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        say(f"{_PROGRAM}: cannot load {args.settings}: {exc}")
        return 2
    try:
        settings = (
            found if isinstance(found, IntegrationSettings)
            else IntegrationSettings.from_mapping(found, source=args.settings)
        )
        require_shared_store(settings, "worker", program=_PROGRAM, store_setting=f"{args.settings}['STORE']")
        log_to_stderr(logging.INFO)
        serve(settings, say)
    except ConfigError as exc:
        say(f"{_PROGRAM}: {exc}")
        return 2
    except StoreError as exc:
        say(f"{_PROGRAM}: {exc}")
        return 1
    say("recoverkit worker: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
