"""SMS through a provider with a Twilio-style API, using recoverkit's HttpChannel and a ``build`` function.

Many SMS providers take a form-encoded ``POST .../Messages`` with ``To``, ``From`` and ``Body`` fields and
HTTP basic authentication with an account id and a secret. ``build_sms`` turns a recoverkit message and its
rendered text into that request; ``sms_channel`` wires it into an :class:`recoverkit.channels.HttpChannel`.
Adjust the URL, the field names and the sender to your provider.

The text comes from the template the flow step names (``cart-reminder`` by default), file
``cart-reminder.sms.txt``: recoverkit ships one, and ``Templates("templates/")`` uses yours. Preview it with
``recoverkit preview cart-reminder --channel sms``.

Run ``python examples/twilio_like_sms.py`` to print the request for a sample message without sending it.
"""

from __future__ import annotations

import functools

import recoverkit
from recoverkit.channels import HttpChannel, RequestSpec
from recoverkit.templates import Rendered, Templates, sample_message

#: The provider's endpoint; the account id is part of the path.
API_URL = "https://api.sms-provider.example/2010-04-01/Accounts/{account}/Messages.json"


def build_sms(message: recoverkit.Message, rendered: Rendered, *, sender: str) -> RequestSpec:
    """The provider's request for ``message``: form fields ``To``, ``From``, ``Body``.

    A message without a phone number fails permanently: retrying would not give it one. The message key
    travels in the ``Idempotency-Key`` header, which the channel adds to every request.
    """
    phone = message.recipient.phone
    if not phone:
        raise recoverkit.PermanentDeliveryError(f"message {message.key!r} has no phone number")
    # Providers want E.164 (+4917012345678): keep the leading plus and the digits.
    to = "+" + "".join(c for c in phone if c.isdigit()) if phone.startswith("+") else phone
    return RequestSpec(form={"To": to, "From": sender, "Body": rendered.text})


def sms_channel(account: str, token: str, sender: str, templates: Templates | None = None) -> HttpChannel:
    """An ``HttpChannel`` posting to the provider's API with basic auth (account id, token)."""
    return HttpChannel(
        API_URL.format(account=account),
        kind="sms",
        build=functools.partial(build_sms, sender=sender),
        templates=templates,
        auth=(account, token),
    )


# engine = recoverkit.BackgroundEngine(channels={"sms": sms_channel("AC123", os.environ["SMS_TOKEN"], "MyShop")})

if __name__ == "__main__":
    sample = sample_message("sms")
    spec = build_sms(sample, Templates().render(sample.template, sample, kind="sms"), sender="MyShop")
    for field, value in (spec.form or {}).items():
        print(f"{field}: {value}")
