"""What only the demo does before Django starts: a folder for its files, and published, dev-only secrets.

Called by ``manage.py``, ``wsgi.py`` and ``asgi.py``, never by ``settings.py``, so that importing the settings (a
test suite does) changes nothing in the process. A real shop generates each secret with
``python -c 'import secrets; print(secrets.token_urlsafe(48))'`` and passes it in the environment of every
process that serves the shop or runs ``manage.py recoverkit``.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Published in this file, so worthless: set only when the environment has none.
DEV_ONLY_SECRETS = {
    "RECOVERKIT_LINK_SECRET": "dev-only-link-secret-published-in-the-example-do-not-use",
    "RECOVERKIT_CODE_SECRET": "dev-only-code-secret-published-in-the-example-do-not-use",
}


def prepare() -> None:
    """Create the folder of the demo's files (``settings.VAR_DIR`` of the settings in use) and set the dev-only
    secrets where the environment has none."""
    from django.conf import settings

    Path(settings.VAR_DIR).mkdir(parents=True, exist_ok=True)
    for name, value in DEV_ONLY_SECRETS.items():
        os.environ.setdefault(name, value)
