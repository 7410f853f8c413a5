"""Settings of the example shop. Everything recoverkit-related is in the RECOVERKIT block below.

Importing this module changes nothing (no folder, no environment variable): ``shopsite.dev.prepare()``, called by
``manage.py``, ``wsgi.py`` and ``asgi.py``, does what the demo needs before Django starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .recovery import BASE_URL, PORT, RECOVERY_CONFIG

BASE_DIR = Path(__file__).resolve().parent.parent
#: The demo's files: the shop's database, recoverkit's store, the outbox. Kept out of git (.gitignore).
VAR_DIR = Path(os.environ.get("SHOP_VAR_DIR", BASE_DIR / "var"))

# Demo only: published here. A real shop reads its own from the environment.
SECRET_KEY = os.environ.get("SHOP_SECRET_KEY", "dev-only-django-secret-key-published-in-the-example-do-not-use")
DEBUG = os.environ.get("SHOP_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.messages",
    "recoverkit.contrib.django",
    "storefront",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # The session cookie, request.recoverkit, and the events CHECKOUT_PATHS names when those pages load.
    "recoverkit.contrib.django.middleware.RecoverkitMiddleware",
]

ROOT_URLCONF = "shopsite.urls"
WSGI_APPLICATION = "shopsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database(url: str | None) -> dict[str, Any]:
    """The shop's database: a SQLite file in VAR_DIR, or the PostgreSQL database ``SHOP_DATABASE_URL`` names
    (``postgresql://user:password@host:5432/shop``; a Unix socket's directory as ``?host=/run/postgresql``)."""
    if not url:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": VAR_DIR / "shop.sqlite3", "OPTIONS": {"timeout": 20}}
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or query.get("host", ""),
        "PORT": str(parts.port or query.get("port", "")),
    }


#: Two or more hosts behind a load balancer share one PostgreSQL database: set SHOP_DATABASE_URL on every host
#: (README.md, "Run it on two hosts"). Without it, a SQLite file on this host.
DATABASES = {"default": _database(os.environ.get("SHOP_DATABASE_URL"))}
_ON_POSTGRESQL = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The session only holds the id of the shopper's cart (carts are rows in the database, so a restore link can find
# them): signed cookies are enough, and every worker process reads them.
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
MESSAGE_STORAGE = "django.contrib.messages.storage.cookie.CookieStorage"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en"

# -- recoverkit --------------------------------------------------------------------------------------------------
SHOP_NAME = "The Example Shop"
SHOP_PORT = PORT
SHOP_BASE_URL = BASE_URL
#: The demo's "mailbox": one JSON line per message sent (storefront.outbox.DemoOutbox); /outbox shows it.
SHOP_OUTBOX = Path(os.environ.get("SHOP_OUTBOX", VAR_DIR / "outbox.jsonl"))

RECOVERKIT = {
    # Flows, offers and restore links (shopsite/recovery.py); a dict, a recoverkit.Config or a TOML file's path.
    "CONFIG": RECOVERY_CONFIG,
    # Where recoverkit keeps its state, which every process shares: nothing is lost on a restart, and one process
    # at a time runs the pipeline. On one host, a SQLite file beside the shop's; on PostgreSQL, the shop's own
    # database (in a schema of its own, `recoverkit`, made once by `recoverkit db init URL`), which every host
    # shares.
    "STORE": {"DATABASE": "default"} if _ON_POSTGRESQL else str(VAR_DIR / "recoverkit.db"),
    # The "e-mail provider": an import path to a class recoverkit builds at start-up.
    "CHANNELS": {"email": "storefront.outbox.DemoOutbox"},
    # begin_checkout is recorded by the middleware when the first checkout page loads, with no code in that view.
    "CHECKOUT_PATHS": {"/checkout/address": "begin_checkout"},
    # TRACK_PAGE_VIEWS stays off here: a page view is activity, and watching /outbox in the same browser would
    # count as coming back to the cart (which stops its reminders).
}
