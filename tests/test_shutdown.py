"""Stopping, gently or not, with real processes: what ``kill -9`` can lose in ``durability = "batch"`` under
overload, and the ASGI worker draining on SIGTERM (the Django and Flask worker commands have the same test in
tests/contrib/). benchmarks/bench_overload_kill.py measures the first over several kills."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import anyio
import msgspec
import pytest

from recoverkit import Config, Engine
from recoverkit.config import StoreConfig
from recoverkit.store import describe_database

ROOT = Path(__file__).resolve().parent.parent
COUNT = struct.Struct("<q")

TRACKER = """
import os, struct, sys
import recoverkit
from recoverkit.config import StoreConfig

path, fd = sys.argv[1], int(sys.argv[2])
engine = recoverkit.BackgroundEngine(
    recoverkit.Config(store=StoreConfig(path=path, checkpoint_interval=3600.0)), close_at_exit=False
)
engine.start()
os.write(fd, struct.pack("<q", 0))
i = 0
while True:  # as fast as this thread can: the engine's loop and its commits fall behind
    if not engine.track({"event": "page_view", "session_id": str(i)}):
        os.write(fd, struct.pack("<q", -1))
        break
    i += 1
    if i % 64 == 0:
        os.write(fd, struct.pack("<q", i))  # events 0 .. i-1 were acknowledged
"""


@pytest.mark.slow
def test_kill_9_under_overload_loses_at_most_two_inboxes_of_acknowledged_events(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    read_end, write_end = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-c", TRACKER, str(path), str(write_end)], pass_fds=(write_end,), stderr=subprocess.PIPE
    )
    os.close(write_end)
    counts: list[int] = []

    def read() -> None:
        buffer = b""
        while chunk := os.read(read_end, 65536):
            buffer += chunk
            whole = len(buffer) - len(buffer) % COUNT.size
            counts.extend(value for (value,) in COUNT.iter_unpack(buffer[:whole]))
            buffer = buffer[whole:]

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not counts:
            assert time.monotonic() < deadline, "the tracking process did not start"
            time.sleep(0.05)
        time.sleep(1.5)
        child.send_signal(signal.SIGKILL)
        _, err = child.communicate(timeout=30)
        reader.join(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
        os.close(read_end)
    assert -1 not in counts, f"track() refused an event: {err.decode()[-2000:]}"
    acknowledged = max(counts)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT data FROM journal")
        journaled = {int(msgspec.json.decode(data)["session_id"]) for (data,) in rows}
    lost = sum(1 for n in range(acknowledged) if n not in journaled)
    # The inbox (inbox_capacity events at most) and the batch being committed (as many): nothing else waits.
    bound = 2 * Config().inbox_capacity
    assert lost <= bound <= 8192, f"{lost} of {acknowledged} acknowledged events lost"
    assert acknowledged > bound  # the run was long enough for the bound to mean something


@pytest.mark.slow
def test_the_asgi_worker_drains_on_sigterm_and_exits_0(tmp_path: Path) -> None:
    store = tmp_path / "state.db"
    (tmp_path / "shop_settings.py").write_text(
        textwrap.dedent(
            f"""
            RECOVERKIT = {{"MODE": "journal", "STORE": {str(store)!r}, "CLOSE_TIMEOUT": 20}}
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    worker = subprocess.Popen(
        [sys.executable, "-m", "recoverkit.contrib.asgi_worker", "shop_settings:RECOVERKIT"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not store.exists() or not any(lease.name == "pipeline" for lease in describe_database(store).leases):
            assert worker.poll() is None, worker.communicate()[1]
            assert time.monotonic() < deadline, "the worker did not take the pipeline lease"
            time.sleep(0.1)

        # A web process in mode "journal": it journals, the worker runs the pipeline.
        async def web() -> int:
            acknowledged = 0
            engine = Engine(Config(store=StoreConfig(path=str(store))), pipeline=False)
            async with engine:
                for i in range(5000):
                    acknowledged += engine.track({"event": "add_to_cart", "session_id": f"s{i}", "items": []})
                    if i % 500 == 0:
                        await anyio.sleep(0)
            return acknowledged

        acknowledged = anyio.run(web)
        worker.send_signal(signal.SIGTERM)  # at once: the worker has most of the journal still to read
        _, err = worker.communicate(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, err
    assert "SIGTERM: draining and stopping" in err and err.rstrip().endswith("recoverkit worker: stopped")
    info = describe_database(store)
    assert acknowledged == 5000
    # Everything journaled was read and handled before the worker exited: its last checkpoint covers it all, and
    # the lease is released for the next worker.
    assert info.checkpoint_position == info.last_seq >= 5000
    assert not info.leases or all(lease.name != "pipeline" or lease.expires_at < time.time() for lease in info.leases)
