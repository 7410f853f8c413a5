"""Cross-site request forgery protection for the Flask and ASGI consoles (Django's console uses Django's own).

Signed double submit: the console gives each browser a random console session id in a cookie (``HttpOnly``,
``SameSite=Strict``, on the console's path only) and puts in every form a token that is the HMAC-SHA256, keyed
with the shop's secret, of that session id and the operator's name. A ``POST`` is carried out only when its form
token matches its cookie for the operator signed in. Another site can make a browser send the cookie but can
neither read it nor compute the token without the secret; a token copied from one operator's page is worthless
to another operator or browser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

__all__ = ["COOKIE", "FIELD", "CsrfTokens"]

#: The cookie holding the console session id.
COOKIE: Final = "rk_console"
#: The form field holding the token.
FIELD: Final = "csrf_token"
#: The least bytes of secret accepted: a short secret could be guessed from tokens.
MIN_SECRET: Final = 16


class CsrfTokens:
    """Makes and checks the console's form tokens with ``secret`` (the shop's secret key, at least 16 bytes)."""

    def __init__(self, secret: str | bytes) -> None:
        key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(key) < MIN_SECRET:
            raise ValueError(
                f"the console's CSRF secret: expected at least {MIN_SECRET} bytes (the shop's secret key), got "
                f"{len(key)}"
            )
        # A key of its own, derived: a token is never a valid signature of anything else the shop signs.
        self._key = hmac.new(key, b"recoverkit.console.csrf", hashlib.sha256).digest()

    @staticmethod
    def new_session() -> str:
        """A fresh console session id for the cookie (128 random bits)."""
        return secrets.token_urlsafe(16)

    def token(self, session: str, operator: str) -> str:
        """The form token of ``session`` (the cookie's value) for the operator named ``operator``."""
        mac = hmac.new(self._key, f"{len(session)}:{session}|{operator}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def check(self, session: str | None, operator: str, token: str | None) -> bool:
        """Whether ``token`` is the token of ``session`` for ``operator`` (``False`` when either is missing)."""
        if not session or not token:
            return False
        return hmac.compare_digest(self.token(session, operator).encode(), token.encode("utf-8", "replace"))
