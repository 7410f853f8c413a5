"""A channel that appends each message to a JSON Lines file or binary stream (``recoverkit replay --out``).

Each line is exactly one :class:`~recoverkit.channels.Message` encoded by msgspec, every field included, so
``msgspec.json.Decoder(Message).decode(line)`` gives the message back. Nothing is added (no send time): the
output of a replay is a pure function of its input.

The output contains personal data: every line carries the recipient's email address or phone number. Treat
the file like the shop's customer database, not like a log.
"""

from __future__ import annotations

import io
import os
import sys
from typing import BinaryIO

import msgspec

from .._files import open_private
from ..errors import ConfigError, PermanentDeliveryError, TransientDeliveryError
from .base import Message

__all__ = ["JsonLinesChannel"]

_encoder = msgspec.json.Encoder()


class JsonLinesChannel:
    """Append each message as one JSON line to ``target``.

    ``target`` is a path (opened for appending at construction, so a bad path fails at start-up, not at the
    first message), ``"-"`` for standard output, or an open binary stream such as ``sys.stdout.buffer`` or an
    ``io.BytesIO``. Writes are small synchronous appends, one ``write`` per line; they go through the stream's
    buffer, so lines may not reach the file until :meth:`flush` or :meth:`aclose`.

    :meth:`aclose` flushes, and closes the file only if the channel opened it; a stream passed in (and
    standard output) stays open. After :meth:`aclose`, :meth:`send` raises
    :class:`~recoverkit.errors.PermanentDeliveryError`. An ``OSError`` while writing (disk full, closed pipe)
    is raised as :class:`~recoverkit.errors.TransientDeliveryError`.
    """

    def __init__(self, target: str | os.PathLike[str] | BinaryIO) -> None:
        self._stream: BinaryIO
        if isinstance(target, (str, os.PathLike)):
            path = os.fspath(target)
            if path == "-":
                # Looked up now, not at import, so a replaced sys.stdout (pytest's capture) is honoured.
                stdout = getattr(sys.stdout, "buffer", None)
                if stdout is None:
                    raise ConfigError(
                        "JsonLinesChannel('-') needs a binary standard output, but sys.stdout is "
                        f"{sys.stdout!r} without a .buffer; pass a path or a binary stream instead"
                    )
                self._stream, self._owns_stream, self._name = stdout, False, "<stdout>"
            else:
                # Closed in aclose(); the channel outlives any with-block we could write here. Messages carry
                # shoppers' addresses: a new file is created 0600 (recoverkit._files).
                fd = open_private(path, os.O_WRONLY | os.O_APPEND)
                self._stream = os.fdopen(fd, "ab")
                self._owns_stream, self._name = True, path
        elif isinstance(target, io.TextIOBase):
            raise ConfigError(
                f"JsonLinesChannel needs a binary stream, got the text stream {target!r}; "
                "pass its .buffer (e.g. sys.stdout.buffer) or a path"
            )
        else:
            self._stream, self._owns_stream = target, False
            self._name = str(getattr(target, "name", type(target).__name__))
        self._closed = False
        # Reused for every line: encode_into() truncates it to the new message, so no per-send allocation.
        self._buffer = bytearray()

    async def send(self, message: Message) -> None:
        """Append ``message`` as one JSON line."""
        if self._closed:
            raise PermanentDeliveryError(
                f"JsonLinesChannel writing to {self._name} is closed; message {message.key!r} was not written"
            )
        _encoder.encode_into(message, self._buffer)
        self._buffer.extend(b"\n")
        try:
            self._stream.write(self._buffer)
        except OSError as exc:
            raise TransientDeliveryError(
                f"JsonLinesChannel could not write message {message.key!r} to {self._name}: {exc}"
            ) from exc

    def flush(self) -> None:
        """Push buffered lines to the file or stream. A no-op after :meth:`aclose`."""
        if not self._closed:
            self._stream.flush()

    async def aclose(self) -> None:
        """Flush, and close the file if this channel opened it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._stream.flush()
        finally:
            if self._owns_stream:
                self._stream.close()
