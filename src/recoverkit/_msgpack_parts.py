"""Large msgpack documents written in parts, so that a checkpoint never holds the event loop for long.

A checkpoint at 100,000 open carts is about 22 MB. Encoded in one call, then copied into the checkpoint's
envelope in another, it held the event loop for 40-60 ms (two 22 MB copies while holding the GIL). Here a
document is a list of ``bytes`` parts, each with the exact bytes msgspec would write for its piece, and the
headers msgspec would write around them; :func:`join` copies them into one ``bytes`` on a worker thread.
CPython's ``bytes.join`` lets go of the GIL while it copies more than a megabyte of ``bytes`` parts (not of
memoryviews: hence bytes parts), so the event loop runs meanwhile.

The result is byte for byte what ``msgspec.msgpack.encode`` writes for the whole (the tests compare them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import Any, Final, NamedTuple

import anyio
import msgspec

__all__ = [
    "ARRAY",
    "BIN",
    "MAP",
    "Lazy",
    "bin_header",
    "encode_fields",
    "encode_in_parts",
    "header",
    "header_size",
    "join",
]

# msgpack's headers: (the one-byte form's base for up to 15 elements or None, for up to 65,535, for more).
ARRAY: Final = (0x90, b"\xdc", b"\xdd")
MAP: Final = (0x80, b"\xde", b"\xdf")
#: Binary data: up to 255 bytes, up to 65,535, more.
BIN: Final = (b"\xc4", b"\xc5", b"\xc6")
#: Below this many bytes a join is done inline: a thread hand-off costs more than the copy.
INLINE_JOIN: Final = 1 << 20


def header(kind: tuple[int, bytes, bytes], length: int) -> bytes:
    """The msgpack header of an array or a map (``kind``: :data:`ARRAY`, :data:`MAP`) of ``length`` elements."""
    small, medium, large = kind
    if length < 16:
        return bytes((small | length,))
    if length < 1 << 16:
        return medium + length.to_bytes(2, "big")
    return large + length.to_bytes(4, "big")


def bin_header(length: int) -> bytes:
    """The msgpack header of ``length`` bytes of binary data, as msgspec writes it for a ``bytes`` value."""
    one, two, four = BIN
    if length < 1 << 8:
        return one + bytes((length,))
    if length < 1 << 16:
        return two + length.to_bytes(2, "big")
    return four + length.to_bytes(4, "big")


def header_size(first: int) -> int:
    """The size of a msgpack array's or map's header, from its first byte."""
    return 3 if first in (0xDC, 0xDE) else 5 if first in (0xDD, 0xDF) else 1


async def encode_in_parts(
    items: Iterator[Any], count: int, container: Callable[[list[Any]], Any], parts: list[bytes], *, step: int
) -> None:
    """Append the msgpack encoding of ``container`` of the ``count`` ``items`` to ``parts``, header first,
    ``step`` items at a time, letting the event loop run after each.

    ``items`` is read lazily (no list of them all is built), so the caller must not change what it iterates
    until this returns; an iterator over a dict raises if it does.
    """
    parts.append(header(ARRAY if container is list else MAP, count))
    encode = msgspec.msgpack.encode
    while chunk := list(islice(items, step)):
        part = encode(container(chunk))
        # Each part's own header is cut off (one header above covers them all). Sliced to bytes, not a
        # memoryview: join() copies without the GIL only bytes.
        parts.append(part[header_size(part[0]) :])
        await anyio.sleep(0)


class Lazy(NamedTuple):
    """A field's value read lazily by :func:`encode_fields`: ``length`` items from ``items`` into
    ``container`` (``list``, or ``dict`` of key-value pairs)."""

    items: Iterator[Any]
    length: int
    container: Callable[[list[Any]], Any]


async def encode_fields(fields: Sequence[Any], *, step: int) -> bytes:
    """The msgpack encoding of an ``array_like`` Struct whose field values are ``fields``, in order: lists and
    dicts of more than ``step`` items (and :class:`Lazy` values) a part at a time, with the event loop let run
    between parts, anything else in one go; the parts joined by :func:`join`."""
    parts = [header(ARRAY, len(fields))]
    encode = msgspec.msgpack.encode
    for value in fields:
        if isinstance(value, Lazy):
            await encode_in_parts(value.items, value.length, value.container, parts, step=step)
        elif isinstance(value, dict) and len(value) > step:
            await encode_in_parts(iter(value.items()), len(value), dict, parts, step=step)
        elif isinstance(value, list) and len(value) > step:
            await encode_in_parts(iter(value), len(value), list, parts, step=step)
        else:
            parts.append(encode(value))
    return await join(parts)


async def join(parts: list[bytes]) -> bytes:
    """``b"".join(parts)``, on a worker thread when it is large (the event loop runs while it copies)."""
    if sum(map(len, parts)) < INLINE_JOIN:
        return b"".join(parts)
    return await anyio.to_thread.run_sync(b"".join, parts)
