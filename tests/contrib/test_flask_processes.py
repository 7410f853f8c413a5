"""The Flask extension under a real gunicorn with ``--preload``: the app (and its engine) is built in the master,
which then forks the workers. Every worker must record events with an engine of its own, whose thread started in
that worker, and the one holding the shared store's lease sends each message once."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("gunicorn", path=str(Path(sys.executable).parent)) is None,
                       reason="gunicorn is not installed"),
]

HERE = Path(__file__).parent
SHOPPERS = 8


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return result


def test_workers_forked_from_a_preloaded_app_each_record_and_every_message_goes_once(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.jsonl"
    log = tmp_path / "gunicorn.log"
    env = {**os.environ, "RK_TEST_STORE": str(tmp_path / "rk.db"), "RK_TEST_OUTBOX": str(outbox),
           "RK_TEST_MODE": "embedded"}
    gunicorn = Path(sys.executable).parent / "gunicorn"
    server = subprocess.Popen(
        [str(gunicorn), "--preload", "--workers", "2", "--bind", "127.0.0.1:0", "--graceful-timeout", "30",
         "--error-logfile", str(log), "--chdir", str(HERE), "flask_process_app:create_app()"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        address = wait_for(lambda: re.search(r"Listening at: (http://\S+)", log.read_text() if log.exists() else ""),
                           "gunicorn to listen").group(1)
        wait_for(lambda: log.read_text().count("Booting worker") >= 2, "two workers")
        served: dict[str, int] = {}
        for _ in range(SHOPPERS):
            with httpx.Client(base_url=address, timeout=30) as shopper:  # a new browser: no cookie yet
                answer = shopper.get("/add").raise_for_status().json()
                served[answer["session_id"]] = answer["pid"]
        assert server.pid not in served.values()  # requests are served by the forked workers

        def sent() -> list[dict[str, Any]]:
            lines = outbox.read_text().splitlines() if outbox.exists() else []
            return [json.loads(line) for line in lines] if len(lines) >= SHOPPERS else []

        messages = wait_for(sent, "a message for every shopper")
        assert sorted(m["key"] for m in messages) == sorted(f"{sid}/now/0" for sid in served)
        workers = {int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", log.read_text())}
        assert set(served.values()) <= workers and {m["pid"] for m in messages} <= workers
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=90)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    assert server.returncode == 0, log.read_text()
    text = log.read_text()
    assert "Traceback" not in text and "Exception" not in text, text
    assert len(outbox.read_text().splitlines()) == SHOPPERS  # the workers drained on exit: nothing sent twice
