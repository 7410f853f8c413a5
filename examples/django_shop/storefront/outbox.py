"""The demo's "e-mail provider": a recoverkit channel adapter that renders each message with recoverkit's built-in
templates, prints it on the console and appends it to a JSON-lines file (``settings.SHOP_OUTBOX``), which the
``/outbox`` page shows. A shop's adapter hands the rendered e-mail to its provider instead (``recoverkit.SmtpChannel``
does that over SMTP).

The file holds what an outbox holds, addresses included: it is the demo's mailbox, not a log.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import msgspec
from django.conf import settings

import recoverkit

_encoder = msgspec.json.Encoder()


class DemoOutbox:
    """``RECOVERKIT["CHANNELS"] = {"email": "storefront.outbox.DemoOutbox"}``: recoverkit builds it at start-up."""

    def __init__(self, path: str | os.PathLike[str] | None = None, stream: TextIO | None = None) -> None:
        self.path = Path(path if path is not None else settings.SHOP_OUTBOX)
        self.templates = recoverkit.Templates(variables={"shop_name": settings.SHOP_NAME})
        self._stream = stream

    def check_templates(self, names: Any) -> None:
        self.templates.check(names)  # the engine calls this at start-up: a broken template fails then

    async def send(self, message: recoverkit.Message) -> None:
        rendered = self.templates.render(message.template, message, kind="email")
        record = {
            "key": message.key,
            "flow": message.flow,
            "step": message.step,
            "template": message.template,
            "to": message.recipient.email,
            "subject": rendered.subject,
            "text": rendered.text,
            "restore_url": message.restore_url,
            "code": message.offer.code if message.offer is not None else None,
            "sent_at": time.time(),
            "pid": os.getpid(),  # under several worker processes: the one holding the pipeline lease sent it
        }
        # One write of one line in append mode, the file closed at once: whole lines, visible to every process
        # (and to `tail -f`) as soon as they are written. A small blocking write: fine for a demo's outbox.
        with open(self.path, "ab") as file:
            file.write(_encoder.encode(record) + b"\n")
        stream = self._stream if self._stream is not None else sys.stdout
        print(f"\n--- recovery e-mail {message.key} ---\nSubject: {rendered.subject}\n\n{rendered.text}\n---",
              file=stream, flush=True)


def read_outbox(path: str | os.PathLike[str] | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The last ``limit`` messages in the outbox file, newest first."""
    file = Path(path if path is not None else settings.SHOP_OUTBOX)
    try:
        lines = file.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    records: list[dict[str, Any]] = [msgspec.json.decode(line) for line in lines[-limit:] if line.strip()]
    return records[::-1]
