"""Headless Chromium for the HTML report's tests: the rendered DOM of a file, a screenshot's pixels.

Chromium is started with the network closed off (no first-run, sync, component updates or background
requests) and a throw-away profile. Tests that need it call :func:`require_chromium`, which skips them, saying
how to install it, when no Chromium binary is found.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

__all__ = ["Element", "dom", "hex_colour", "parse", "require_chromium", "screenshot_pixels"]

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
)  # fmt: skip


def require_chromium() -> str:
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no chromium binary found: install Debian's package (apt-get install -y chromium) to run this test")


def _run(binary: str, page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [binary, *_FLAGS, f"--user-data-dir={tmp / 'profile'}", *extra, page.resolve().as_uri()],
        capture_output=True, timeout=90, check=True,
    )  # fmt: skip


def dom(page: Path, tmp: Path) -> str:
    """The DOM Chromium built from ``page``, serialised after the page loaded."""
    return _run(require_chromium(), page, tmp, "--dump-dom").stdout.decode("utf-8")


class Element:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Element | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Element] = []
        self.text = ""

    def find_all(self, tag: str) -> list[Element]:
        found = []
        for child in self.children:
            if child.tag == tag:
                found.append(child)
            found.extend(child.find_all(tag))
        return found

    def child(self, tag: str) -> Element | None:
        return next((c for c in self.children if c.tag == tag), None)


_VOID = {"meta", "link", "br", "img", "input", "hr", "col", "wbr", "source", "area", "base", "embed", "param"}


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {}, None)
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs}, self.current)
        self.current.children.append(element)
        if tag not in _VOID:
            self.current = element

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.current.children.append(Element(tag, {k: v or "" for k, v in attrs}, self.current))

    def handle_endtag(self, tag: str) -> None:
        node: Element | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.text += data


def parse(html: str) -> Element:
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root


def screenshot_pixels(page: Path, tmp: Path, width: int = 1000, height: int = 1600) -> set[tuple[int, int, int]]:
    """The colours Chromium painted when rendering ``page`` in a ``width`` x ``height`` window."""
    shot = tmp / "shot.png"
    _run(require_chromium(), page, tmp, f"--screenshot={shot}", f"--window-size={width},{height}")
    return _colours(shot.read_bytes())


def _colours(png: bytes) -> set[tuple[int, int, int]]:
    """Decode an 8-bit RGB or RGBA PNG (what Chromium writes) far enough to list its colours."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None
    width, height, depth, colour_type = header[:4]
    assert depth == 8 and colour_type in (2, 6), f"unexpected PNG format {header}"
    bpp = 3 if colour_type == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    previous = bytearray(stride)
    colours: set[tuple[int, int, int]] = set()
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        _unfilter(kind, line, previous, bpp)
        colours.update(zip(line[0::bpp], line[1::bpp], line[2::bpp], strict=True))
        previous = line
    return colours


def _unfilter(kind: int, line: bytearray, previous: bytearray, bpp: int) -> None:
    if kind == 0:
        return
    if kind == 2:
        line[:] = bytes((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        return
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = previous[i]
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        else:  # 4, Paeth
            corner = previous[i - bpp] if i >= bpp else 0
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
            line[i] = (line[i] + pred) & 0xFF


def hex_colour(value: str) -> tuple[int, int, int]:
    value = value.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)
