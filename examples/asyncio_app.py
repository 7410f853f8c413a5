"""recoverkit inside an asyncio application, live, on the wall clock.

Run: python examples/asyncio_app.py   (takes about 5 seconds)

The waits are shortened (abandon after 2 s, email 1 s later) so you can watch a cart being abandoned and the
message going out through the console adapter. In a shop you would keep the defaults (30 min, 1 h, 24 h).
"""

from __future__ import annotations

import sys

import anyio

import recoverkit


async def main() -> None:
    config = recoverkit.Config(
        abandon_after=2.0,
        flows=[recoverkit.Flow(name="quick", steps=[recoverkit.FlowStep(delay=1.0, channel="email")])],
    )
    channel = recoverkit.ConsoleChannel(stream=sys.stdout)
    async with recoverkit.Engine(config, channels={"email": channel}) as engine:
        session = "demo-session-1"
        engine.track({"event": "identify", "session_id": session, "customer_id": "c-42", "email": "ada@example.com"})
        engine.track({"event": "consent", "session_id": session, "granted": ["email"]})
        engine.track({
            "event": "add_to_cart", "session_id": session, "currency": "EUR",
            "items": [{"item_id": "SKU-1", "name": "Teapot", "price": "39.90", "quantity": 1}],
        })  # fmt: skip
        engine.track({"event": "begin_checkout", "session_id": session})
        print("cart filled; waiting for it to be abandoned and the message to go out ...")
        await anyio.sleep(4.0)
        stats = engine.statistics()
        print(f"abandonments: {stats.abandonments}, messages: {stats.messages}")


if __name__ == "__main__":
    anyio.run(main)
