"""Support for the Django integration tests: Django set up once per test process, on the example shop's settings
(``django_support.settings``), with a database of its own in a temporary folder; fixtures in
:mod:`django_support.fixtures`.

Django can be set up once per process, so every Django test module calls :func:`setup` at import and changes
recoverkit's settings per test with ``override_settings(RECOVERKIT=...)`` (the ``rk`` fixture), which rebuilds
the process's engine and closes it afterwards. Nothing here touches the Flask or ASGI tests: Django's settings are
read from this package's module, logging is left alone, and ``DJANGO_SETTINGS_MODULE`` is not left in the
environment of other tests' subprocesses.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

__all__ = ["EXAMPLE", "ROOT", "SUPPORT_PARENT", "setup"]

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "django_shop"
#: The folder holding this package (tests/contrib): on sys.path for subprocesses that import it.
SUPPORT_PARENT = Path(__file__).resolve().parent.parent

_done = False
_lock = threading.Lock()


def setup() -> None:
    """Set Django up on the test settings and migrate the test database (once per process)."""
    global _done
    with _lock:
        if _done:
            return
        if str(EXAMPLE) not in sys.path:
            sys.path.insert(0, str(EXAMPLE))  # the shop's packages: shopsite, storefront
        import django
        from django.conf import settings

        if not settings.configured:
            previous = os.environ.get("DJANGO_SETTINGS_MODULE")
            os.environ["DJANGO_SETTINGS_MODULE"] = "django_support.settings"
            try:
                django.setup()
            finally:
                if previous is None:
                    os.environ.pop("DJANGO_SETTINGS_MODULE", None)
                else:
                    os.environ["DJANGO_SETTINGS_MODULE"] = previous
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)
        _done = True
