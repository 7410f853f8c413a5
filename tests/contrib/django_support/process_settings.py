"""Django settings for the tests that run real processes (gunicorn workers, ``manage.py recoverkit worker``): the
example shop's, configured from the environment.

``RK_TEST_DIR`` holds the shop's database, recoverkit's shared store (``rk.db``) and the outbox
(``outbox.jsonl``: one JSON line per message, with the pid of the process that sent it); ``RK_TEST_MODE`` is
recoverkit's ``MODE``. A cart is abandoned ``RK_TEST_ABANDON_AFTER`` seconds (default 2) after its last event and
its one message is due at once, so a test waits seconds of wall time, not half an hour. Every response says which
process served it (``X-Worker``).
"""

from __future__ import annotations

import os
from pathlib import Path

from shopsite.recovery import RECOVERY_CONFIG
from shopsite.settings import *  # noqa: F403 - the example shop's settings
from shopsite.settings import MIDDLEWARE, RECOVERKIT

_DIR = Path(os.environ["RK_TEST_DIR"])

VAR_DIR = _DIR
DEBUG = False
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _DIR / "shop.sqlite3",
        # Several worker processes write carts at once: wait for the lock rather than fail, and take it when the
        # transaction starts (a deferred one upgraded later can fail without waiting).
        "OPTIONS": {"timeout": 60, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"},
    }
}
SHOP_OUTBOX = _DIR / "outbox.jsonl"
MIDDLEWARE = [*MIDDLEWARE, "django_support.worker_header.WorkerHeaderMiddleware"]
RECOVERKIT = {
    **RECOVERKIT,
    "MODE": os.environ.get("RK_TEST_MODE", "embedded"),
    "STORE": str(_DIR / "rk.db"),
    "CONFIG": {
        "abandon_after": float(os.environ.get("RK_TEST_ABANDON_AFTER", "2")),
        "tick_interval": 0.05,
        "store": {"checkpoint_interval": 1, "lease_ttl": 2},
        "flows": [{"name": "now", "steps": [{"delay": 0, "channel": "email", "template": "cart-reminder"}]}],
        "links": RECOVERY_CONFIG["links"],
    },
    "CLOSE_TIMEOUT": 5,
}
