"""SQLiteStore keeps personal data private and erases it for real: file modes, zeroed pages, a truncated WAL.

Every test reads the bytes of the files themselves (the main file and its ``-wal``), as someone with a copy of
the directory would.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from recoverkit.store import SQLiteStore

T0 = 1_767_225_600.0
EMAIL = b"ada.lovelace@example.invalid"
PHONE = b"+4915112345678"


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def on_disk(db: Path) -> bytes:
    """Everything the store's files hold, as bytes: the main file, its WAL and its shared-memory index."""
    return b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))


def personal_event(n: int) -> bytes:
    return b'{"event":"identify","customer_id":"c1","email":"%s","phone":"%s","n":%d}' % (EMAIL, PHONE, n)


def test_a_new_store_and_its_wal_and_shm_are_readable_by_the_owner_only(tmp_path: Path, umask_022: None) -> None:
    db = tmp_path / "state.db"
    with SQLiteStore(db) as store:
        store.append_events([personal_event(0)], now=T0)
        files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert files == {"state.db": 0o600, "state.db-wal": 0o600, "state.db-shm": 0o600}


def test_an_existing_file_keeps_the_mode_its_operator_gave_it(tmp_path: Path, umask_022: None) -> None:
    db = tmp_path / "state.db"
    SQLiteStore(db).close()
    db.chmod(0o640)
    with SQLiteStore(db) as store:
        store.append_events([b"{}"], now=T0)
    assert stat.S_IMODE(db.stat().st_mode) == 0o640


def test_after_forget_and_the_trim_that_follows_no_byte_of_the_contact_is_left_while_the_store_is_open(
    tmp_path: Path,
) -> None:
    db = tmp_path / "state.db"
    with SQLiteStore(db) as store:
        # What an engine leaves: the customer's events in the journal, a checkpoint naming them, a dead letter.
        store.append_events([personal_event(n) for n in range(200)], now=T0)
        store.save_checkpoint(200, b"route:" + EMAIL + PHONE * 50, now=T0)
        store.add_dead_letter(
            "cart-1/f/0", b'{"recipient":{"email":"%s"}}' % EMAIL, error="550", attempts=1, permanent=True, at=T0,
            contact_key="c1",
        )  # fmt: skip
        store.append_events([b'{"event":"page_view","session_id":"other"}'], now=T0)
        assert EMAIL in on_disk(db) and PHONE in on_disk(db)

        store.forget("c1", at=T0 + 1)
        store.save_checkpoint(201, b"route:{}", now=T0 + 1)  # the engine's checkpoint right after the forget
        store.trim_events(201)

        data = on_disk(db)
        assert EMAIL not in data and PHONE not in data
        assert store.last_scrub is not None and store.last_scrub.wal_truncated
        assert (tmp_path / "state.db-wal").stat().st_size == 0
        assert store.read_events(0, 10) == []


def test_free_pages_left_with_old_content_by_an_older_recoverkit_are_zeroed_once(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    SQLiteStore(db).close()
    # An older recoverkit trimmed with secure_delete = FAST: whole pages went to the free list unwritten.
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("PRAGMA secure_delete = FAST")
        conn.executemany("INSERT INTO journal (data, accepted_at) VALUES (?, ?)", [(personal_event(0) * 40, T0)] * 50)
        conn.execute("DELETE FROM journal")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] > 0
    assert EMAIL in db.read_bytes()
    with SQLiteStore(db) as store:
        first = store.scrub()
        assert first.free_pages_zeroed > 0 and first.wal_truncated
        assert EMAIL not in on_disk(db)
        assert store.scrub().free_pages_zeroed == 0  # zeroed as they are freed from now on


def test_a_reader_on_an_old_snapshot_holds_the_wal_and_scrub_says_so(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SQLiteStore(db) as store, contextlib.closing(sqlite3.connect(db, isolation_level=None)) as reader:
        store.append_events([personal_event(0)], now=T0)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM journal").fetchone()  # another process, mid-read
        store.trim_events(1)
        held = store.scrub()
        assert not held.wal_truncated and held.wal_frames_left > 0
        reader.execute("COMMIT")
        done = store.scrub()
        assert done.wal_truncated and done.wal_frames_left == 0
        assert EMAIL not in on_disk(db)


def test_a_forget_without_a_trim_is_scrubbed_when_the_store_closes(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    other = SQLiteStore(db)  # another process keeps the file open, so closing ours does not end the WAL
    try:
        store = SQLiteStore(db)
        store.add_dead_letter("k", b"to " + EMAIL, error="550", attempts=1, permanent=True, at=T0, contact_key="c1")
        store.forget("c1", at=T0)
        assert EMAIL in on_disk(db)  # the old page image, in the WAL
        store.close()
        assert store.last_scrub is not None and store.last_scrub.wal_truncated
        assert EMAIL not in on_disk(db)
    finally:
        other.close()
