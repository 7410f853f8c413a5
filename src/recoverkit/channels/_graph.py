"""Meta's Graph API answers, read the same way for Custom Audiences, WhatsApp Cloud API and Messenger.

A failed Graph call answers ``{"error": {"message", "type", "code", "error_subcode", "is_transient",
"fbtrace_id"}}``. What is worth retrying:

- **Rate limits**: codes 4 (application), 17 (user), 32 (page), 613 (calls within an hour), 80003 to 80014
  (business use case limits, Custom Audiences' among them), 130429 (WhatsApp throughput), 131048 (WhatsApp
  spam rate limit), 131056 (WhatsApp pair rate limit); and any HTTP 429. Retried after ``Retry-After`` when the
  answer has one, else after the engine's backoff.
- **Platform trouble**: codes 1 and 2 (unknown / service), 131000 (WhatsApp "something went wrong"), 131016 and
  133004 (service unavailable), an error marked ``is_transient``, any 5xx, an answer that is not JSON.

Everything else is permanent: an expired or revoked token (190), a missing permission (10, 200-299), an invalid
parameter (100), a recipient who cannot be reached (WhatsApp 131026, outside the window 131047; Messenger 551,
10 with subcode 2018278). Error messages name the host, the code and subcode, and quote the platform's
message with the token, addresses and phone numbers masked; ``fbtrace_id`` is kept (Meta's support asks for it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from ._api import Answer
from ._retry import retry_after

__all__ = ["RATE_LIMIT_CODES", "graph_error"]

RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, *range(80003, 80015), 130429, 131048, 131056})
_TRANSIENT_CODES = frozenset({1, 2, 131000, 131016, 133004})


def graph_error(
    answer: Answer, *, owner: str, where: str, what: str, scrub: Callable[[str], str], hint: str = ""
) -> DeliveryError:
    """The error for a Graph API ``answer`` that is not a success; see the module docstring. ``scrub`` masks the
    token and personal data in the platform's message."""
    error: Any = answer.body.get("error") if isinstance(answer.body, dict) else None
    after = retry_after(answer.headers.get("Retry-After"))
    wait = f"; retry after {after:g} s (Retry-After)" if after is not None else ""
    if not isinstance(error, dict):
        return _not_graph(answer, f"{owner}: {what}: {where} answered HTTP {answer.status}", wait, after, hint)
    code = error.get("code")
    subcode = error.get("error_subcode")
    trace = error.get("fbtrace_id")
    trace = scrub(trace)[:64] if isinstance(trace, str) else None
    message = answer.text if not isinstance(error.get("message"), str) else scrub(error["message"])[:200]
    detail = f"code {code}" + (f", subcode {subcode}" if subcode is not None else "")
    text = (
        f"{owner}: {what}: {where} answered HTTP {answer.status}, Graph API error {detail}: {message}"
        + (f" (fbtrace_id {trace})" if isinstance(trace, str) else "")
    )
    if code in RATE_LIMIT_CODES or answer.status == 429:
        return TransientDeliveryError(f"{text}; rate limited{wait or ', a later retry may succeed'}",
                                      retry_after=after)
    if code in _TRANSIENT_CODES or error.get("is_transient") is True or answer.status >= 500:
        return TransientDeliveryError(f"{text}; a later retry may succeed{wait}", retry_after=after)
    return PermanentDeliveryError(f"{text}; not retried{hint}")


def _not_graph(answer: Answer, text: str, wait: str, after: float | None, hint: str) -> DeliveryError:
    """An answer without Graph API error JSON (a proxy's page, an empty 503): read by its status alone."""
    text += f" ({answer.text})" if answer.text else ""
    if answer.status == 429 or answer.status >= 500 or answer.status in (408, 425):
        return TransientDeliveryError(text + (wait or "; a later retry may succeed"), retry_after=after)
    return PermanentDeliveryError(f"{text}; expected 2xx with Graph API JSON{hint}")
