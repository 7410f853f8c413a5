"""A few W3C WebDriver commands over HTTP (urllib), for driving Debian's chromium through its chromedriver.

No Selenium: :class:`Browser` starts ``chromedriver`` on a free local port, opens one headless session with a
throw-away profile and the network to the outside closed off, and offers what the on-site tests need: go to a
URL, find elements by CSS selector, click, type, read text and cookies, wait for a condition.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

__all__ = ["Browser", "require_chromedriver"]

T = TypeVar("T")
_ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C web element identifier
#: Not "HeadlessChrome": the shop would count the visitor as a bot, which records nothing.
_USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


def require_chromedriver() -> tuple[str, str]:
    driver = shutil.which("chromedriver")
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    if driver is None or browser is None:
        pytest.skip("chromium and chromedriver are needed: apt-get install -y chromium chromium-driver")
    return driver, browser


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Browser:
    """One headless chromium session; close it with :meth:`close` (or use it as a context manager)."""

    def __init__(self, profile: Path) -> None:
        driver, binary = require_chromedriver()
        port = _free_port()
        self._process = subprocess.Popen(
            [driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._base = f"http://127.0.0.1:{port}"
        self._wait_for_driver()
        args = [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", f"--user-agent={_USER_AGENT}",
        ]  # fmt: skip
        options = {"binary": binary, "args": args}
        capabilities = {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}
        answer = self._call("POST", "/session", {"capabilities": capabilities})
        self._session = f"/session/{answer['sessionId']}"

    def _wait_for_driver(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self._base + "/status", timeout=2) as response:
                    if json.loads(response.read())["value"].get("ready"):
                        return
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("chromedriver did not become ready within 30 s")
            time.sleep(0.1)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self._base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"WebDriver {method} {path}: {exc.code} {exc.read()[:500]!r}") from None

    def go(self, url: str) -> None:
        self._call("POST", self._session + "/url", {"url": url})

    def find(self, selector: str) -> list[str]:
        """The element ids of what ``selector`` matches now (empty when nothing does)."""
        found = self._call("POST", self._session + "/elements", {"using": "css selector", "value": selector})
        # W3C names the reference _ELEMENT; some chromedriver builds answer with the legacy key beside or instead.
        assert isinstance(found, list) and all(_ELEMENT in e or "ELEMENT" in e for e in found), found
        return [element.get(_ELEMENT) or element["ELEMENT"] for element in found]

    def text(self, selector: str) -> str:
        return " ".join(self._call("GET", f"{self._session}/element/{e}/text") for e in self.find(selector))

    def click(self, selector: str) -> None:
        [element] = self.find(selector)[:1] or [None]
        if element is None:
            raise AssertionError(f"nothing to click: no {selector!r} on {self.url()}")
        self._call("POST", f"{self._session}/element/{element}/click", {})

    def type(self, selector: str, text: str) -> None:
        [element] = self.find(selector)[:1]
        self._call("POST", f"{self._session}/element/{element}/value", {"text": text})

    def url(self) -> str:
        return str(self._call("GET", self._session + "/url"))

    def page(self) -> str:
        return str(self._call("GET", self._session + "/source"))

    def script(self, source: str, *args: Any) -> Any:
        return self._call("POST", self._session + "/execute/sync", {"script": source, "args": list(args)})

    def cookies(self) -> dict[str, str]:
        return {c["name"]: c["value"] for c in self._call("GET", self._session + "/cookie")}

    def wait(self, condition: Callable[[], T], what: str, timeout: float = 15.0) -> T:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout} s for {what}; the page is at {self.url()}")
            time.sleep(0.05)

    def close(self) -> None:
        try:
            self._call("DELETE", self._session)
        finally:
            self._process.terminate()
            self._process.wait(timeout=10)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
