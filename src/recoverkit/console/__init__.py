"""The operator console: a small web app mounted inside the shop, never public (docs/console.md).

Live figures, carts and their messages, dead letters with resend, the ledger's unknown outcomes with resolve, and
forget and export of a customer; server-rendered, usable without JavaScript. This package is the framework-neutral
core; mount it with an adapter:

- Django: ``path("ops/recoverkit/", include("recoverkit.contrib.django.console_urls"))``, behind the admin's login,
  ``is_staff`` and the ``recoverkit.*`` permissions;
- Flask: ``app.register_blueprint(console_blueprint(authorize=...), url_prefix="/ops/recoverkit")``
  (:mod:`recoverkit.contrib.flask.console`);
- ASGI: ``ConsoleApp(auth=..., secret=...)`` (:mod:`recoverkit.contrib.asgi_console`).

Every page receives an :class:`Operator` (a name for the audit log and the permissions held); every action
checks its permission (:class:`PermissionDenied`: 403) and is appended to the store's audit log.
"""

from ._access import EngineAccess
from ._actions import RESEND_LEASE_TTL, ActionResult, export, forget, resend, resolve
from ._app import ConsoleRequest, ConsoleResponse, handle
from ._csrf import CsrfTokens
from ._figures import Figures, live_figures
from ._lists import CartRow, LetterRow, MessageRow, dead_letter_rows, search_carts, unknown_rows
from ._masking import mask_email, mask_fields, mask_phone, mask_text
from ._pages import require_templates
from ._permissions import (
    EXPORT,
    FORGET,
    PERMISSIONS,
    RESEND,
    RESOLVE,
    VIEW,
    VIEW_PERSONAL_DATA,
    Operator,
    PermissionDenied,
)

__all__ = [
    "EXPORT",
    "FORGET",
    "PERMISSIONS",
    "RESEND",
    "RESEND_LEASE_TTL",
    "RESOLVE",
    "VIEW",
    "VIEW_PERSONAL_DATA",
    "ActionResult",
    "CartRow",
    "ConsoleRequest",
    "ConsoleResponse",
    "CsrfTokens",
    "EngineAccess",
    "Figures",
    "LetterRow",
    "MessageRow",
    "Operator",
    "PermissionDenied",
    "dead_letter_rows",
    "export",
    "forget",
    "handle",
    "live_figures",
    "mask_email",
    "mask_fields",
    "mask_phone",
    "mask_text",
    "require_templates",
    "resend",
    "resolve",
    "search_carts",
    "unknown_rows",
]
