"""A shopper leaves a cart in the example Django shop and gets the message, in this process, for the logging
tests: ``python -m django_support.logging_shop`` on :mod:`django_support.logging_settings`.

It prints nothing itself (the tests read its standard output and error for what recoverkit printed). The session
id goes to ``RK_TEST_DIR/session.txt``; the message, code and restore link are in the outbox.
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path
from typing import Any

from django_support import EXAMPLE

if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))  # the shop's packages: shopsite, storefront

from storefront.outbox import DemoOutbox  # after the path: the shop's package

EMAIL = "leaving.shopper@example.com"
PHONE = "+49 170 5550123"


class QuietOutbox(DemoOutbox):
    """The demo outbox, its console copy of each e-mail kept in memory rather than printed on stdout."""

    def __init__(self) -> None:
        super().__init__(stream=io.StringIO())


def main() -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from recoverkit.contrib.django import close, get_state
    from recoverkit.integration import SESSION_COOKIE

    directory = Path(os.environ["RK_TEST_DIR"])
    call_command("migrate", interactive=False, verbosity=0)
    browser = Client()
    for method, path, form in [
        ("get", "/", None),
        ("post", "/cart/add", {"sku": "MUG-1"}),
        ("get", "/checkout/address", None),
        ("post", "/checkout/address", {"email": EMAIL, "marketing": "yes"}),
        ("post", "/checkout/shipping", {"shipping": "express"}),
    ]:
        response = getattr(browser, method)(path, form or {})
        assert response.status_code in (200, 302), (path, response.status_code)
    session = browser.cookies[SESSION_COOKIE].value
    (directory / "session.txt").write_text(session)
    # Personal data the engine refuses (a phone that is a number): logged as an invalid event, without it.
    engine: Any = get_state().engine
    engine.track({"event": "identify", "session_id": session, "email": EMAIL, "phone": int(PHONE[1:].replace(" ", ""))})
    engine.track({"event": "identify", "session_id": "other-session", "email": EMAIL, "phone": PHONE})
    outbox = directory / "outbox.jsonl"
    deadline = time.monotonic() + 60
    while not (outbox.exists() and outbox.read_text().strip()):
        assert time.monotonic() < deadline, "no message within 60 s"
        time.sleep(0.05)
    close(10)


if __name__ == "__main__":
    main()
