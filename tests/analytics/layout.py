"""The HTML report as a reader's browser lays it out: headless Chromium, driven over WebDriver, at a given width.

:class:`ReportBrowser` opens a report file in a viewport of exactly the width asked for (Chromium's device
metrics, as its device toolbar sets them; ``mobile`` applies the page's viewport meta as a phone does), measures
what scrolls sideways, and takes screenshots of the page's top (:func:`screenshots` makes the ones in
docs/images/). Skipped, saying how to install them, without chromium and chromedriver.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from onsite.webdriver import Browser

__all__ = ["ReportBrowser"]

#: What the layout tests measure: the page's own horizontal overflow, each table container's, and where the
#: headline and the first section heading are.
_MEASURE = """
const root = document.documentElement;
const head = document.getElementById('headline');
const h2 = document.querySelector('h2');
return {
  width: window.innerWidth, scroll: root.scrollWidth, client: root.clientWidth,
  wide: Array.from(document.querySelectorAll('.wide')).map(
    e => [e.scrollWidth, e.clientWidth, e.innerText.slice(0, 40)]),
  headline: head ? head.getBoundingClientRect().top : null, first_h2: h2 ? h2.getBoundingClientRect().top : null,
  figures: Array.from(document.querySelectorAll('#headline .figure')).map(e => e.id),
};
"""


class ReportBrowser(Browser):
    """A :class:`~onsite.webdriver.Browser` that sizes its viewport and measures the report's layout."""

    def cdp(self, command: str, params: dict[str, Any]) -> Any:
        return self._call("POST", self._session + "/goog/cdp/execute", {"cmd": command, "params": params})

    def open(self, page: Path, width: int, height: int = 900, *, mobile: bool = False) -> None:
        self.cdp("Emulation.setDeviceMetricsOverride",
                 {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})  # fmt: skip
        self.go(page.resolve().as_uri())

    def measure(self) -> dict[str, Any]:
        found: dict[str, Any] = self.script(_MEASURE)
        return found

    def screenshot(self, out: Path, width: int, height: int) -> None:
        """The top ``width`` x ``height`` pixels of the page, as PNG."""
        clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
        shot = self.cdp("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True})
        out.write_bytes(base64.b64decode(shot["data"]))
