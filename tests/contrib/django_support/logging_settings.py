"""Django settings for the logging tests: the process settings (:mod:`django_support.process_settings`) plus a
``LOGGING`` read from ``RK_TEST_LOGGING`` (JSON), and one flow whose message carries a discount code and a restore
link, so that the tests can look for both in what recoverkit logged.

Nothing here imports recoverkit: its loggers are created after Django applied ``LOGGING``, as in a shop whose
settings name recoverkit only by strings.
"""

from __future__ import annotations

import json
import os

from shopsite.recovery import RECOVERY_CONFIG

from .process_settings import *  # noqa: F403 - the process tests' settings
from .process_settings import RECOVERKIT

_LAST_CALL_NOW = {"delay": 0, "channel": "email", "template": "cart-last-call", "offer": "ten-percent"}

LOGGING = json.loads(os.environ["RK_TEST_LOGGING"])
RECOVERKIT = {
    **RECOVERKIT,
    # The demo outbox prints each e-mail on stdout; the shop's own output is not what these tests look at.
    "CHANNELS": {"email": "django_support.logging_shop.QuietOutbox"},
    "CONFIG": {
        **RECOVERKIT["CONFIG"],
        "offers": RECOVERY_CONFIG["offers"],
        "flows": [{"name": "now", "steps": [_LAST_CALL_NOW]}],
    },
}
