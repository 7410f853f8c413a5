"""Django settings of the in-process tests: the example shop's, with a database in a temporary folder, Django's
logging left alone, test views under ``/t/`` beside the shop, and recoverkit off until a test sets it up."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from shopsite.settings import *  # noqa: F403 - the example shop's settings, as a shop's test settings would
from shopsite.settings import INSTALLED_APPS

_TMP = Path(tempfile.mkdtemp(prefix="recoverkit-django-tests-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)

VAR_DIR = _TMP
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": _TMP / "shop.sqlite3",
                         "OPTIONS": {"timeout": 30}}}
SHOP_OUTBOX = _TMP / "outbox.jsonl"
ROOT_URLCONF = "django_support.urls"
INSTALLED_APPS = [*INSTALLED_APPS]
DEBUG = False
# The test process's logging belongs to pytest: Django must not configure it.
LOGGING_CONFIG = None
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast test users
# Each test sets its own (the rk fixture); "off" builds no engine and starts no thread.
RECOVERKIT = {"MODE": "off"}
