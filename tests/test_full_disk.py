"""A store that cannot take writes, on real files: a full filesystem and an immutable file.

The full disk is a 768 kB tmpfs when this process may mount one (root), and otherwise a file-size limit
(``RLIMIT_FSIZE``, with SIGXFSZ ignored so that writes fail with EFBIG): both in a child process, which tracks
events as a web process in journal mode does (``pipeline=False``: nothing trims the journal) and reports what
``track()`` answered. The immutable file is made with ``chattr +i``, which only root may do.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from recoverkit import Config, Engine
from recoverkit.config import StoreConfig
from recoverkit.errors import StoreError
from recoverkit.store import SQLiteStore

EVENTS = 10_000

CHILD = f"""
import json, resource, signal, sys
from recoverkit import Config, Engine
from recoverkit.config import StoreConfig
import anyio

path, limit = sys.argv[1], int(sys.argv[2])
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

async def main():
    answers = []
    engine = Engine(Config(store=StoreConfig(path=path)), pipeline=False)
    async with engine:
        for i in range({EVENTS}):
            answers.append(engine.track({{"event": "page_view", "session_id": "s%d" % i, "page_type": "x" * 40}}))
            if i % 100 == 0:
                await anyio.sleep(0)  # let the engine's loop drain the inbox now and then, as a web server would
    stats = engine.statistics()
    print(json.dumps({{"true": sum(answers), "false": len(answers) - sum(answers),
                      "first_false": answers.index(False) if False in answers else None,
                      "accepted": stats.events_accepted, "overflow": stats.events_overflow}}))

anyio.run(main)
"""


@contextlib.contextmanager
def small_tmpfs(directory: Path) -> Iterator[Path]:
    directory.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=768k", "tmpfs", str(directory)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'not permitted'})")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def run_child(path: Path, limit: int) -> dict[str, int | None]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(limit)], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, int | None] = json.loads(done.stdout)
    return result


def journaled(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT count(*) FROM journal").fetchone()[0])


def check_full_disk_answers(result: dict[str, int | None], path: Path, inbox_capacity: int) -> None:
    true, false, accepted, overflow = result["true"], result["false"], result["accepted"], result["overflow"]
    assert isinstance(true, int) and isinstance(false, int) and isinstance(accepted, int)
    assert isinstance(overflow, int)
    assert true + false == EVENTS
    assert 0 < journaled(path) == accepted < EVENTS  # some fitted and were kept; not all
    assert false > 0  # once the store refused writes, track() said so
    # Every acknowledged event is in the journal or counted as lost; those lost are at most what was acknowledged
    # before the store first refused: the rest of the batch being written then, and the inbox behind it. Never
    # whole batches that would have fitted, nor anything acknowledged after.
    lost_after_true = true - accepted
    assert lost_after_true == overflow - false
    assert 0 <= lost_after_true <= 2 * inbox_capacity


@pytest.mark.slow
def test_a_full_tmpfs_keeps_what_fits_and_track_returns_false_once_it_is_full(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    with small_tmpfs(tmp_path / "small") as small:
        path = small / "state.db"
        result = run_child(path, limit=0)
        check_full_disk_answers(result, path, Config().inbox_capacity)


@pytest.mark.slow
def test_a_file_size_limit_keeps_what_fits_and_track_returns_false_once_it_is_reached(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    result = run_child(path, limit=500_000)
    check_full_disk_answers(result, path, Config().inbox_capacity)


@pytest.fixture
def immutable_store(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "state.db"
    with SQLiteStore(path) as store:
        store.append_events([b'{"event": "page_view", "session_id": "s1"}'], now=1_767_225_600.0)
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make a file immutable here: {made.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_an_engine_refuses_to_start_on_a_store_file_it_cannot_write(immutable_store: Path) -> None:
    with pytest.raises(StoreError) as raised:
        Engine(Config(store=StoreConfig(path=str(immutable_store))))
    message = str(raised.value)
    assert str(immutable_store) in message and "Operation not permitted (EPERM)" in message


def test_db_check_reports_a_store_file_that_cannot_be_written(immutable_store: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "recoverkit", "db", "check", str(immutable_store)], capture_output=True, text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 problem" in done.stdout and "cannot be written: Operation not permitted (EPERM)" in done.stdout
