"""Google Ads Customer Match: abandoners added to, and removed from, a customer list (a CRM-based user list).

Each batch is one offline user data job, as the Google Ads API's REST interface documents it:

1. ``POST /<version>/customers/<customer_id>/offlineUserDataJobs:create`` with ``{"job": {"type":
   "CUSTOMER_MATCH_USER_LIST", "customerMatchUserListMetadata": {"userList": "customers/<id>/userLists/<list>",
   "consent": {"adUserData": "GRANTED", "adPersonalization": "GRANTED"}}}}`` answers the job's
   ``resourceName``;
2. ``POST /<version>/<resourceName>:addOperations`` with ``{"operations": [{"create": {"userIdentifiers":
   [{"hashedEmail": ...}, {"hashedPhoneNumber": ...}]}}, ...]}`` (``"remove"`` instead of ``"create"`` for a
   withdrawal; a job holds one kind only);
3. ``POST /<version>/<resourceName>:run``: Google processes the job asynchronously (matching takes hours).

The consent sent is ``GRANTED`` for both ad user data and ad personalisation, because recoverkit sends on this
channel only to customers who granted the consent it requires (``"ads"`` by default): that consent, as the shop
asks for it, must cover both (Google requires it for users in the EEA). Identifiers are normalised as Google
documents: email trimmed, lower-cased, dots removed before ``@gmail.com`` and ``@googlemail.com``; phone in
E.164 with its ``+``; then SHA-256, hex.

Headers: ``Authorization: Bearer <OAuth access token>`` (a str, or a function returning the current one: they
expire after an hour), ``developer-token``, and ``login-customer-id`` when a manager account is used.

Errors, from the ``google.rpc.Status`` body (``{"error": {"code", "message", "status", "details"}}``):
``RESOURCE_EXHAUSTED`` (quota, HTTP 429), ``UNAVAILABLE``, ``INTERNAL``, ``DEADLINE_EXCEEDED``, ``ABORTED`` and
a ``CONCURRENT_MODIFICATION`` error code (another job on the same list) are transient, retried after the
``retryDelay`` a ``QuotaErrorDetails`` gives or ``Retry-After``; everything else (``UNAUTHENTICATED``,
``PERMISSION_DENIED``, ``INVALID_ARGUMENT``, ``NOT_FOUND``) is permanent. See docs/audiences.md.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, DeliveryError, PermanentDeliveryError, TransientDeliveryError
from ._api import Answer, JsonApi, Token, check_base_url, check_text, check_timeout, check_token
from ._hashing import e164, normalise_email, sha256_hex
from ._retry import retry_after
from .audiences import MAX_AGE, AudienceChannel, AudienceMembers, Identifiers, Operation
from .base import Recipient

if TYPE_CHECKING:
    import httpx

__all__ = ["GoogleAdsAudience"]

GOOGLE_ADS_URL = "https://googleads.googleapis.com/v19"
#: Google's documented maximum of operations in one addOperations request.
MAX_BATCH = 100_000
_TRANSIENT_STATUSES = frozenset({"RESOURCE_EXHAUSTED", "UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED", "ABORTED"})
_DURATION = re.compile(r"(\d+(?:\.\d+)?)s")


class GoogleAdsAudience(AudienceChannel):
    """Adds abandoners to Customer Match list ``user_list_id`` of ``customer_id``; removes them again.

    - ``customer_id``: the Google Ads account that owns the list, ten digits (dashes allowed: ``123-456-7890``).
    - ``user_list_id``: the list's numeric id.
    - ``developer_token``: the API developer token; ``access_token``: an OAuth access token with the
      ``https://www.googleapis.com/auth/adwords`` scope, or a function (sync or async) returning the current one.
    - ``login_customer_id``: the manager account's id, when access goes through one.
    - ``members``, ``batch_size`` (at most 100,000), ``linger``, ``timeout``, ``client``, ``max_age``: as for
      :class:`~recoverkit.channels.MetaAudience`; ``base_url``: the API with its version.
    """

    owner = "GoogleAdsAudience"

    def __init__(
        self,
        customer_id: str,
        user_list_id: str,
        *,
        developer_token: str,
        access_token: Token,
        members: AudienceMembers | str | os.PathLike[str],
        login_customer_id: str | None = None,
        base_url: str = GOOGLE_ADS_URL,
        batch_size: int = 5000,
        linger: float = 0.5,
        max_age: float | None = MAX_AGE,
        timeout: float = 60.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        customer = _account(self.owner, "customer_id", customer_id)
        list_id = check_text(self.owner, "user_list_id", user_list_id)
        if not list_id.isdigit():
            raise ConfigError(f"GoogleAdsAudience user_list_id must be the list's numeric id, got {list_id!r}")
        developer = check_text(self.owner, "developer_token", developer_token, secret=True)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or not 1 <= batch_size <= MAX_BATCH:
            raise ConfigError(f"GoogleAdsAudience batch_size must be an int from 1 to {MAX_BATCH}, got {batch_size!r}")
        headers = {"developer-token": developer}
        if login_customer_id is not None:
            headers["login-customer-id"] = _account(self.owner, "login_customer_id", login_customer_id)
        self._developer = developer
        self._api = JsonApi(
            self.owner, check_base_url(self.owner, base_url, GOOGLE_ADS_URL), check_token(self.owner, access_token),
            timeout=check_timeout(self.owner, timeout), client=client, headers=headers,
        )  # fmt: skip
        super().__init__(f"google:{customer}:{list_id}", members=members, batch_size=batch_size, linger=linger,
                         max_age=max_age)
        self._customer = customer
        self._user_list = f"customers/{customer}/userLists/{list_id}"

    def __repr__(self) -> str:
        return f"GoogleAdsAudience(user_list={self._user_list!r}, host={self._api.where!r})"

    def _identifiers(self, recipient: Recipient) -> Identifiers:
        identifiers: Identifiers = {}
        problems = []
        if recipient.email:
            try:
                identifiers["email"] = sha256_hex(normalise_email(recipient.email, gmail_dots=True))
            except ValueError as exc:
                problems.append(str(exc))
        if recipient.phone:
            try:
                identifiers["phone"] = sha256_hex(e164(recipient.phone))
            except ValueError as exc:
                problems.append(str(exc))
        if not identifiers:
            raise ValueError("; ".join(problems) or "the recipient has no email or phone to match on")
        return identifiers

    async def _upload(self, operation: Operation, members: list[Identifiers], what: str) -> None:
        described = f"{'adding' if operation == 'add' else 'removing'} {len(members)} member(s) for {what}"
        job = {
            "job": {
                "type": "CUSTOMER_MATCH_USER_LIST",
                "customerMatchUserListMetadata": {
                    "userList": self._user_list,
                    "consent": {"adUserData": "GRANTED", "adPersonalization": "GRANTED"},
                },
            }
        }
        created = await self._call(f"customers/{self._customer}/offlineUserDataJobs:create", job, described)
        name = created.get("resourceName") if isinstance(created, dict) else None
        if not isinstance(name, str) or not name.startswith(f"customers/{self._customer}/offlineUserDataJobs/"):
            raise PermanentDeliveryError(
                f"{self.owner}: {described}: {self._api.where} created a job without a resourceName of this "
                "account; expected {\"resourceName\": \"customers/<id>/offlineUserDataJobs/<job>\"}"
            )
        kind = "create" if operation == "add" else "remove"
        operations = [
            {kind: {"userIdentifiers": [
                {"hashedEmail" if k == "email" else "hashedPhoneNumber": v} for k, v in sorted(m.items())
            ]}}
            for m in members
        ]  # fmt: skip
        await self._call(f"{name}:addOperations", {"operations": operations, "enablePartialFailure": False}, described)
        await self._call(f"{name}:run", {}, described)

    async def _call(self, path: str, body: Any, what: str) -> Any:
        answer = await self._api.request("POST", path, what, body)
        if 200 <= answer.status < 300:
            return answer.body
        raise _google_error(answer, owner=self.owner, where=self._api.where, what=what,
                            scrub=lambda text: self._api.scrub(text, self._developer))

    async def aclose(self) -> None:
        """Close the HTTP client (if the channel made it) and the membership file (if given as a path)."""
        await self._api.aclose()
        await self._close_members()


def _account(owner: str, name: str, value: object) -> str:
    text = check_text(owner, name, value)
    digits = text.replace("-", "")
    if not digits.isdigit() or len(digits) != 10:
        raise ConfigError(f"{owner} {name} must be a Google Ads account id of ten digits (dashes allowed), "
                          f"got {text!r}")
    return digits


def _google_error(answer: Answer, *, owner: str, where: str, what: str, scrub: Any) -> DeliveryError:
    error: Any = answer.body.get("error") if isinstance(answer.body, dict) else None
    after = retry_after(answer.headers.get("Retry-After"))
    if not isinstance(error, dict):
        said = f" ({answer.text})" if answer.text else ""
        text = f"{owner}: {what}: {where} answered HTTP {answer.status}{said}"
        if answer.status in (408, 429) or answer.status >= 500:
            return TransientDeliveryError(f"{text}; a later retry may succeed", retry_after=after)
        return PermanentDeliveryError(f"{text}; expected 2xx with a google.rpc.Status body when not")
    status = error.get("status")
    codes, delay = _failures(error)
    after = after if after is not None else delay
    message = scrub(error["message"])[:200] if isinstance(error.get("message"), str) else answer.text
    text = (f"{owner}: {what}: {where} answered HTTP {answer.status} {status}"
            f"{' (' + ', '.join(codes[:3]) + ')' if codes else ''}: {message}")
    wait = f"; retry after {after:g} s" if after is not None else "; a later retry may succeed"
    transient = (
        status in _TRANSIENT_STATUSES or answer.status in (429, 503) or answer.status >= 500
        or any(code.endswith("=CONCURRENT_MODIFICATION") for code in codes)
    )
    if transient:
        return TransientDeliveryError(text + wait, retry_after=after)
    return PermanentDeliveryError(f"{text}; not retried")


def _failures(error: dict[str, Any]) -> tuple[list[str], float | None]:
    """The ``GoogleAdsFailure`` error codes (``quotaError=RESOURCE_EXHAUSTED``) in a ``google.rpc.Status``, and the
    ``retryDelay`` of its ``QuotaErrorDetails`` in seconds, if any; malformed parts are skipped."""
    codes: list[str] = []
    delay: float | None = None
    details = error.get("details")
    for detail in details if isinstance(details, list) else ():
        failures = detail.get("errors") if isinstance(detail, dict) else None
        for failure in failures if isinstance(failures, list) else ():
            if not isinstance(failure, dict):
                continue
            code = failure.get("errorCode")
            codes += [f"{k}={v}" for k, v in code.items()] if isinstance(code, dict) else []
            quota = failure.get("details")
            quota = quota.get("quotaErrorDetails") if isinstance(quota, dict) else None
            retry = quota.get("retryDelay") if isinstance(quota, dict) else None
            matched = _DURATION.fullmatch(retry) if isinstance(retry, str) else None
            delay = float(matched.group(1)) if matched else delay
    return codes, delay
