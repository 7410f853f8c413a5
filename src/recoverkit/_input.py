"""Reading an event file: JSON lines from a ``.jsonl`` or ``.jsonl.gz`` file, a binary stream, stdin (``"-"``) or a
list of lines in memory, a block of lines at a time; what a replay and the benchmarks read their input with.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
import zlib
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import IO, Final

from .datasets import DatasetError

__all__ = ["blocks", "kept_lines", "read_lines"]

#: Lines of a list in memory handed on as one block.
_BLOCK_LINES: Final = 1024
#: Bytes of input read in one go (``readlines``' hint): a few hundred lines, handed on as one block.
_BLOCK_BYTES: Final = 1 << 16


def blocks(source: str | Path | IO[bytes] | list[bytes]) -> Iterator[list[bytes]]:
    """The lines of ``source`` in blocks, as read (blank lines included, not stripped): a replay reads millions
    of lines, and a block at a time keeps the work per line in C.

    A file that cannot be read to the end (a truncated or corrupt ``.gz``, a read error) raises
    :class:`~recoverkit.datasets.DatasetError` naming it, the last line read whole and the bytes of text read.
    """
    if isinstance(source, list):
        for start in range(0, len(source), _BLOCK_LINES):
            yield source[start : start + _BLOCK_LINES]
        return
    opened: IO[bytes] | None = None  # the file we opened, which closing a GzipFile does not close
    name = "<stream>"
    if isinstance(source, (str, Path)):
        if str(source) == "-":
            stream: IO[bytes] = sys.stdin.buffer
            name = "<stdin>"
        else:
            path = Path(source)
            name = os.fspath(path)
            raw = opened = path.open("rb")
            magic = raw.peek(2)[:2] if isinstance(raw, io.BufferedReader) else b""
            stream = gzip.GzipFile(fileobj=raw) if magic == b"\x1f\x8b" else raw  # type: ignore[assignment]
    else:
        stream = source
        name = str(getattr(source, "name", name))
    number = read = 0
    # A .gz cut short fails in the middle of a read, and readlines() would lose the lines of the block it was
    # reading: a compressed file is read line by line, so that every line decompressed whole is replayed.
    gzipped = isinstance(stream, gzip.GzipFile)
    blocks = _line_by_line(stream) if gzipped else iter(partial(stream.readlines, _BLOCK_BYTES), [])
    try:
        try:
            for block in blocks:
                number += len(block)
                read += sum(map(len, block))
                yield block
        except (EOFError, zlib.error, OSError) as exc:
            # EOFError: a .gz cut short; zlib.error, BadGzipFile (an OSError): corrupt compressed data.
            why = "it ends before its end-of-stream marker (truncated)" if isinstance(exc, EOFError) else str(exc)
            raise DatasetError(
                f"{name}: could not be read to the end: {why}; read {number:,} line(s) whole "
                f"({read:,} bytes of text); expected a complete file",
                path=name,
                line=number,
            ) from exc
    finally:
        if opened is not None:
            stream.close()
            opened.close()


def _line_by_line(stream: IO[bytes]) -> Iterator[list[bytes]]:
    """``stream``'s lines in blocks of up to :data:`_BLOCK_LINES`, each line read on its own, so that a read error
    loses no line read whole before it (the block so far is yielded first)."""
    block: list[bytes] = []
    try:
        for line in stream:
            block.append(line)
            if len(block) >= _BLOCK_LINES:
                yield block
                block = []
    except (EOFError, zlib.error, OSError):
        if block:
            yield block
        raise
    if block:
        yield block


def kept_lines(block: list[bytes], first: int) -> tuple[list[bytes], Iterable[int]]:
    """The non-empty lines of ``block``, stripped, and their line numbers (1-based, blank lines counted) when
    the block's first line is line ``first``."""
    stripped = [line.strip() for line in block]
    if all(stripped):  # the usual block: no blank line
        return stripped, range(first, first + len(block))
    return [line for line in stripped if line], [first + at for at, line in enumerate(stripped) if line]


def read_lines(source: str | Path | IO[bytes] | list[bytes]) -> Iterator[bytes]:
    """Yield the non-empty lines of a ``.jsonl``/``.jsonl.gz`` file, a binary stream, stdin for ``"-"``, or
    a list of lines already in memory (benchmarks).

    A file that cannot be read to the end raises :class:`~recoverkit.datasets.DatasetError` naming it and
    saying how far it got (after yielding every line read whole before the fault).
    """
    if isinstance(source, list):
        yield from source
        return
    for block in blocks(source):
        yield from kept_lines(block, 1)[0]
