"""Meta Custom Audiences: abandoners added to, and removed from, a customer list custom audience.

Each send adds the recipient to the audience with ``POST /<version>/<audience_id>/users``; a withdrawal
(purchase, ``ads`` consent withdrawn, forget) removes them with ``DELETE`` on the same edge. The body is Meta's
documented payload, multi-key::

    {"payload": {"schema": ["EMAIL", "PHONE"], "data": [["<sha256 of email>", "<sha256 of phone>"], ...]}}

with each value normalised as Meta's documentation requires before hashing: email trimmed and lower-cased;
phone as digits only, country code first, no ``+`` and no leading zeros. A member with only one of the two has
an empty string for the other. The access token (a system user's, with ``ads_management``) travels as an
``Authorization: Bearer`` header, never in the URL. Errors are read as :mod:`recoverkit.channels._graph` says
(rate limits 4, 17, 32, 613 and 80003 and up, HTTP 429: retried). Batches hold up to 10,000 members, Meta's
limit per request. See docs/audiences.md.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ._api import JsonApi, Token, check_base_url, check_text, check_timeout, check_token
from ._graph import graph_error
from ._hashing import e164, normalise_email, sha256_hex
from .audiences import MAX_AGE, AudienceChannel, AudienceMembers, Identifiers, Operation, log
from .base import Recipient

if TYPE_CHECKING:
    import httpx

__all__ = ["MetaAudience"]

#: Meta's documented maximum of members per request to the users edge.
MAX_BATCH = 10_000
GRAPH_URL = "https://graph.facebook.com/v21.0"


class MetaAudience(AudienceChannel):
    """Adds abandoners to the Meta custom audience ``audience_id``; removes them on purchase, withdrawal, forget.

    - ``access_token``: a token with ``ads_management`` on the ad account owning the audience (never logged),
      or a function (sync or async) returning the current one.
    - ``members``: an :class:`~recoverkit.channels.AudienceMembers` or its path (see
      :mod:`recoverkit.channels.audiences`); ``":memory:"`` only in tests.
    - ``base_url``: the Graph API with its version (default ``https://graph.facebook.com/v21.0``).
    - ``batch_size`` (at most 10,000) and ``linger``: batching; ``timeout`` per request; ``client``: an
      ``httpx.AsyncClient`` to share (never closed by the channel).
    - ``max_age``: seconds a member stays at most (default 30 days; ``None``: until withdrawn), see
      :mod:`recoverkit.channels.audiences`.
    """

    owner = "MetaAudience"

    def __init__(
        self,
        audience_id: str,
        *,
        access_token: Token,
        members: AudienceMembers | str | os.PathLike[str],
        base_url: str = GRAPH_URL,
        batch_size: int = 1000,
        linger: float = 0.5,
        max_age: float | None = MAX_AGE,
        timeout: float = 30.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        audience_id = check_text(self.owner, "audience_id", audience_id)
        if not audience_id.isdigit():
            raise ConfigError(f"MetaAudience audience_id must be the audience's numeric id, got {audience_id!r}")
        token = check_token(self.owner, access_token)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or not 1 <= batch_size <= MAX_BATCH:
            raise ConfigError(f"MetaAudience batch_size must be an int from 1 to {MAX_BATCH}, got {batch_size!r}")
        self._api = JsonApi(
            self.owner, check_base_url(self.owner, base_url, GRAPH_URL), token,
            timeout=check_timeout(self.owner, timeout), client=client,
        )  # fmt: skip
        super().__init__(f"meta:{audience_id}", members=members, batch_size=batch_size, linger=linger,
                         max_age=max_age)
        self._path = f"{audience_id}/users"

    def __repr__(self) -> str:
        return f"MetaAudience(audience={self._audience.removeprefix('meta:')!r}, host={self._api.where!r})"

    def _identifiers(self, recipient: Recipient) -> Identifiers:
        identifiers: Identifiers = {}
        problems = []
        if recipient.email:
            try:
                identifiers["email"] = sha256_hex(normalise_email(recipient.email))
            except ValueError as exc:
                problems.append(str(exc))
        if recipient.phone:
            try:
                identifiers["phone"] = sha256_hex(e164(recipient.phone).removeprefix("+"))
            except ValueError as exc:
                problems.append(str(exc))
        if not identifiers:
            raise ValueError("; ".join(problems) or "the recipient has no email or phone to match on")
        return identifiers

    async def _upload(self, operation: Operation, members: list[Identifiers], what: str) -> None:
        body = {
            "payload": {
                "schema": ["EMAIL", "PHONE"],
                "data": [[m.get("email", ""), m.get("phone", "")] for m in members],
            }
        }
        method = "POST" if operation == "add" else "DELETE"
        described = f"{'adding' if operation == 'add' else 'removing'} {len(members)} member(s) for {what}"
        answer = await self._api.request(method, self._path, described, body)
        if not 200 <= answer.status < 300:
            raise graph_error(answer, owner=self.owner, where=self._api.where, what=described, scrub=self._api.scrub)
        received = answer.body.get("num_received") if isinstance(answer.body, dict) else None
        invalid = answer.body.get("num_invalid_entries") if isinstance(answer.body, dict) else None
        if invalid:
            # Counted, not failed: the rest of the batch was taken, and a retry would be refused the same way.
            log.warning("audience_invalid_entries", audience_channel=self.owner, operation=operation,
                        received=received, invalid=invalid)

    async def aclose(self) -> None:
        """Close the HTTP client (if the channel made it) and the membership file (if given as a path)."""
        await self._api.aclose()
        await self._close_members()
