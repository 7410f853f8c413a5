"""A channel adapter for an HTTP SMS provider: the whole interface is one async ``send`` method.

Shows how an adapter classifies failures so recoverkit retries what is worth retrying and dead-letters the
rest, and how it passes the message's idempotency key on so a retry after a timeout is not sent twice.
Adjust the URL, payload and auth to your provider.
"""

from __future__ import annotations

import httpx

import recoverkit


class HttpSmsChannel:
    def __init__(self, api_url: str, token: str, sender: str) -> None:
        self._client = httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {token}"})
        self._sender = sender

    async def send(self, message: recoverkit.Message) -> None:
        phone = message.recipient.phone
        if phone is None:  # route only picks SMS when a phone is known; be defensive anyway
            raise recoverkit.PermanentDeliveryError(f"{message.key}: no phone number")
        text = f"You left {len(message.cart.lines)} item(s) in your cart. Complete your order: ..."
        try:
            response = await self._client.post(
                "/messages",
                json={"from": self._sender, "to": phone, "text": text},
                headers={"Idempotency-Key": message.key},
            )
        except httpx.TransportError as exc:
            raise recoverkit.TransientDeliveryError(f"{message.key}: {type(exc).__name__}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise recoverkit.TransientDeliveryError(f"{message.key}: provider answered {response.status_code}")
        if response.status_code >= 400:
            raise recoverkit.PermanentDeliveryError(f"{message.key}: provider answered {response.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()


# engine = recoverkit.BackgroundEngine(channels={"email": ..., "sms": HttpSmsChannel(URL, TOKEN, "MyShop")})
