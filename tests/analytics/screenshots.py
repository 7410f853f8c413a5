"""Make the screenshots of the HTML report in docs/images/: ``python tests/analytics/screenshots.py``.

The synthetic shop of ``tests/test_cli_report.py`` (1,000 sessions through a real engine with a holdout and a
code offer) is reported on from its store for the last day it routed carts, compared with the day before, and the
top of the page is captured in headless Chromium at 1280 px (a laptop) and 390 px (a phone) wide.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import anyio

HERE = Path(__file__).resolve().parent
IMAGES = HERE.parent.parent / "docs" / "images"


def main() -> None:
    sys.path[:0] = [str(HERE.parent)]
    from analytics.layout import ReportBrowser
    from recoverkit import SQLiteStore
    from recoverkit.cli import main as cli
    from test_cli_report import run_shop

    os.environ.setdefault("RECOVERKIT_CODE_SECRET", "screenshots-secret-" + "x" * 32)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        anyio.run(run_shop, root, backend="asyncio")
        with SQLiteStore(root / "state.db") as store:
            last = max(a.assigned_at for a in store.assignments())
        day = time.strftime("%Y-%m-%d", time.gmtime(last))
        os.chdir(root)  # the report names its store as given: "state.db"
        page = root / "report.html"
        # No events: a day's slice of them would cut sessions in two; the store's own recovery funnel is shown.
        args = ["report", "--store", "state.db", "--period", day, "--format", "html"]
        assert cli([*args, "--output", str(page)]) == 0
        IMAGES.mkdir(exist_ok=True)
        with ReportBrowser(root / "profile") as browser:
            for width, height, mobile in ((1280, 1000, False), (390, 1500, True)):
                browser.open(page, width, 900, mobile=mobile)
                browser.screenshot(IMAGES / f"report-{width}.png", width, height)
    for width in (1280, 390):
        shot = IMAGES / f"report-{width}.png"
        print(f"{shot}: {shot.stat().st_size:,} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
