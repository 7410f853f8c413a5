"""The example Django shop under a real gunicorn: three sync workers forked from a preloaded app, one SQLite store
they share, shoppers whose requests land on different workers.

``--preload`` builds the app, and recoverkit's engine, in the master, which then forks the workers: each worker must
record with an engine of its own, whose thread started in that worker; the store's lease makes one of them run the
pipeline, so each abandoned cart is detected and messaged exactly once although its events were recorded by several
processes, and shoppers who buy get nothing. Real processes, real time: a cart is abandoned 2 s after its last
event, and its one message is due at once.
"""

from __future__ import annotations

import importlib.util
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from recoverkit import SQLiteStore

try:  # tests/contrib is a plain directory; should it become a package, its modules import relatively
    from django_support import EXAMPLE
    from django_support.processes import process_env, read_outbox, wait_for
except ImportError:  # pragma: no cover
    from .django_support import EXAMPLE
    from .django_support.processes import process_env, read_outbox, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("gunicorn") is None,
                       reason="gunicorn is not installed (pip install gunicorn) - the multi-process test needs it"),
]

ABANDON_AFTER = 2.0
SHOPPERS = 10
BUYERS = {0, 3, 6, 9}
_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass
class Visit:
    """What one shopper's browser saw: which process served each request, and when each one started and ended."""

    email: str
    buys: bool
    workers: list[int] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)
    order: str | None = None

    def longest_quiet(self) -> float:
        """An upper bound of the longest time between two of this shopper's events (each is recorded during its
        request): from the start of a request to the end of the next."""
        return max((after[1] - before[0] for before, after in zip(self.spans, self.spans[1:], strict=False)),
                   default=0.0)


def shop(address: str, number: int) -> Visit:
    """One shopper in a new browser: browse, fill the cart, give an address (consenting), choose shipping; buyers
    then pay. Every request on a new connection (gunicorn's sync workers close each one anyway)."""
    import httpx

    visit = Visit(f"shopper-{number}@example.com", number in BUYERS)
    with httpx.Client(base_url=address, timeout=60, headers={"Connection": "close"}) as browser:

        def request(method: str, path: str, status: int, form: dict[str, str] | None = None) -> httpx.Response:
            started = time.monotonic()
            response = browser.request(method, path, data=form)
            visit.spans.append((started, time.monotonic()))
            assert response.status_code == status, (method, path, response.status_code, response.text[:300])
            visit.workers.append(int(response.headers["X-Worker"]))
            return response

        def token(response: httpx.Response) -> str:
            found = _TOKEN.search(response.text)
            assert found is not None, response.text[:300]
            return found.group(1)

        csrf = token(request("GET", "/", 200))
        request("POST", "/cart/add", 302, {"sku": "MUG-1", "csrfmiddlewaretoken": csrf})
        request("POST", "/cart/add", 302, {"sku": "TEE-1", "csrfmiddlewaretoken": csrf})
        assert "1 x Enamel mug" in request("GET", "/cart", 200).text
        page = request("GET", "/checkout/address", 200)
        request("POST", "/checkout/address", 302,
                {"email": visit.email, "marketing": "yes", "csrfmiddlewaretoken": token(page)})
        page = request("GET", "/checkout/shipping", 200)
        request("POST", "/checkout/shipping", 302, {"shipping": "express", "csrfmiddlewaretoken": token(page)})
        if visit.buys:
            page = request("GET", "/checkout/payment", 200)
            paid = request("POST", "/checkout/payment", 302,
                           {"card": "4242 4242 4242 4242", "csrfmiddlewaretoken": token(page)})
            visit.order = paid.headers["Location"].rsplit("/", 1)[-1]
            assert visit.order in request("GET", paid.headers["Location"], 200).text
    return visit


@pytest.mark.timeout(400)
def test_each_abandoned_cart_is_messaged_once_across_preloaded_gunicorn_workers(tmp_path: Path) -> None:
    env = process_env(tmp_path, "embedded", RK_TEST_ABANDON_AFTER=str(ABANDON_AFTER))
    manage = str(EXAMPLE / "manage.py")
    migrated = subprocess.run([sys.executable, manage, "migrate", "--no-input"], env=env, capture_output=True,
                              text=True, timeout=180)
    assert migrated.returncode == 0, migrated.stderr
    outbox, log = tmp_path / "outbox.jsonl", tmp_path / "gunicorn.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--preload", "--workers", "3", "--bind", "127.0.0.1:0",
         "--graceful-timeout", "30", "--timeout", "120", "--error-logfile", str(log), "--chdir", str(EXAMPLE),
         "shopsite.wsgi:application"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        found = wait_for(lambda: re.search(r"Listening at: (http://\S+)", log.read_text() if log.exists() else ""),
                         "gunicorn to listen", timeout=120)
        address = found.group(1)
        wait_for(lambda: log.read_text().count("Booting worker") >= 3, "three workers", timeout=120)

        # Five browsers at a time: while one worker serves a request, the next goes to another.
        with ThreadPoolExecutor(max_workers=5) as browsers:
            visits = list(browsers.map(lambda number: shop(address, number), range(SHOPPERS)))
        leavers = [visit for visit in visits if not visit.buys]

        def everyone_left_is_messaged() -> bool:
            sent = {message["to"] for message in read_outbox(outbox)}
            return all(visit.email in sent for visit in leavers)

        wait_for(everyone_left_is_messaged, "a message for every shopper who left", timeout=180)
        # Not a pause in the hope that a wrong message shows up in time: wait until the pipeline has handled
        # every shopper's last event, as its own records say. A buyer's order recorded as a conversion means the
        # purchase cancelled whatever was scheduled for the cart; every message recorded as sent means its
        # abandonment was handled. No event is then left that could cause a message, and what is in flight is
        # delivered before the workers stop, so the outbox read after they stop holds every message there is.
        orders = {visit.order for visit in visits if visit.buys}
        with SQLiteStore(tmp_path / "rk.db") as store:

            def pipeline_handled_everyone() -> bool:
                converted = {conversion.transaction_id for conversion in store.conversions()}
                sent = {outcome.key for outcome in store.outcomes() if outcome.outcome == "sent"}
                return orders <= converted and {message["key"] for message in read_outbox(outbox)} <= sent

            wait_for(pipeline_handled_everyone, "the pipeline to record every purchase and message", timeout=180)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=120)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    text = log.read_text()
    assert server.returncode == 0, text
    assert "Traceback" not in text and "Exception" not in text, text

    workers = {int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", text)}
    served = {pid for visit in visits for pid in visit.workers}
    assert server.pid not in served and served <= workers  # requests are served by the forked workers
    assert len(served) >= 2, f"every request went to one worker: {served}"
    spread = [visit.email for visit in leavers if len(set(visit.workers)) >= 2]
    assert spread, "no abandoned cart had its requests served by more than one worker"

    messages = read_outbox(outbox)  # the workers have drained and stopped: this is everything that was sent
    per_shopper = Counter(message["to"] for message in messages)
    assert {visit.email: per_shopper[visit.email] for visit in leavers} == {visit.email: 1 for visit in leavers}
    assert len({message["key"] for message in messages}) == len(messages)  # never the same message twice
    assert {message["pid"] for message in messages} <= workers
    for visit in visits:
        if visit.buys:
            # A buyer whose requests were never further apart than the abandonment wait was never abandoned, so
            # gets nothing. (On a machine stalled for seconds between two requests, the cart really was abandoned
            # in between: a message is then right, and still only one, never after the order.)
            expected = 0 if visit.longest_quiet() < ABANDON_AFTER - 0.25 else per_shopper[visit.email]
            assert per_shopper[visit.email] == expected <= 1, (visit.email, visit.longest_quiet())
