"""The dead-letter file: private from its creation, and erasure that rewrites it whole, beside other writers."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from helpers import T0, snapshot
from recoverkit.channels.base import Message, Recipient
from recoverkit.deadletters import DeadLetter, DeadLetters


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which a file opened the ordinary way is world-readable (0644)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def letter(key: str, contact: str, *, email: str | None = None, customer: str | None = None) -> DeadLetter:
    message = Message(
        key=key, flow="f", step=0, channel="email", template="t", due_at=T0, abandoned_at=T0, trigger="idle",
        score=0.5, reason="", cart=snapshot(cart_key=key.split("/")[0]),
        recipient=Recipient(contact_key=contact, customer_id=customer, email=email),
    )  # fmt: skip
    return DeadLetter(message=message, error="PermanentDeliveryError: 550", attempts=1, at=T0, permanent=True)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_file_and_its_lock_are_created_readable_by_the_owner_only(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "dead.jsonl"
    DeadLetters(path).add(letter("cart-1/f/0", "c1", email="ada@example.invalid"))
    assert mode(path) == 0o600
    assert mode(tmp_path / "dead.jsonl.lock") == 0o600


def test_a_file_that_exists_keeps_its_mode_through_appends_and_rewrites(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "dead.jsonl"
    path.touch()
    path.chmod(0o640)  # the operator's choice: a group that reads it
    letters = DeadLetters(path)
    letters.add(letter("cart-1/f/0", "c1"))
    letters.add(letter("cart-2/f/0", "c2"))
    assert letters.forget({"c1"}) == 1
    assert mode(path) == 0o640
    assert [x.message.key for x in DeadLetters(path)] == ["cart-2/f/0"]


def test_forget_removes_every_record_of_the_contact_re_sent_ones_too(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    letters = DeadLetters(path)
    letters.add(letter("cart-1/f/0", "c1", email="ada@example.invalid", customer="c1"))
    letters.add(letter("cart-1/f/1", "session:s9", email="ada@example.invalid", customer="c1"))  # by customer id
    letters.add(letter("cart-3/f/0", "c1", email="ada@example.invalid"))
    letters.mark_resent("cart-3/f/0")  # no longer listed, but its record in the file holds the address
    letters.add(letter("cart-2/f/0", "c2", email="bob@example.invalid"))
    assert letters.forget({"c1"}) == 2
    assert b"ada@example.invalid" not in path.read_bytes()
    assert [x.message.key for x in DeadLetters(path)] == ["cart-2/f/0"]
    assert [x.message.key for x in letters] == ["cart-2/f/0"]


def test_forget_keeps_letters_another_process_added_after_this_one_read_the_file(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    eraser = DeadLetters(path)  # say `recoverkit forget`, or an engine started earlier
    engine = DeadLetters(path)
    engine.add(letter("cart-1/f/0", "c1", email="ada@example.invalid"))
    engine.add(letter("cart-2/f/0", "c2", email="bob@example.invalid"))
    assert eraser.forget({"c1"}) == 1
    assert b"ada@example.invalid" not in path.read_bytes()
    assert [x.message.key for x in DeadLetters(path)] == ["cart-2/f/0"]


@pytest.mark.slow
def test_appends_racing_with_forget_are_never_lost(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    writer, eraser = DeadLetters(path), DeadLetters(path)
    count = 300

    def append() -> None:
        for n in range(count):
            writer.add(letter(f"keep-{n}/f/0", f"k{n}"))

    thread = threading.Thread(target=append)
    thread.start()
    erased = 0
    for n in range(60):
        DeadLetters(path).add(letter(f"gone-{n}/f/0", "c1", email="ada@example.invalid"))
        erased += eraser.forget({"c1"})
    thread.join()
    assert erased == 60
    kept = {x.message.key for x in DeadLetters(path)}
    assert kept == {f"keep-{n}/f/0" for n in range(count)}
    assert b"ada@example.invalid" not in path.read_bytes()


def test_a_crash_mid_rewrite_leaves_the_old_file_and_the_next_forget_finishes(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    letters = DeadLetters(path)
    letters.add(letter("cart-1/f/0", "c1", email="ada@example.invalid"))
    (tmp_path / "dead.jsonl.tmp").write_bytes(b'{"dead": half a rec')  # what a kill -9 during a rewrite leaves
    assert [x.message.key for x in DeadLetters(path)] == ["cart-1/f/0"]  # the file itself is whole
    assert DeadLetters(path).forget({"c1"}) == 1
    assert path.read_bytes() == b""
    assert not (tmp_path / "dead.jsonl.tmp").exists()


def test_each_line_of_the_file_is_a_whole_record(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    letters = DeadLetters(path)
    letters.add(letter("cart-1/f/0", "c1"))
    letters.mark_resent("cart-1/f/0")
    lines = path.read_bytes().splitlines()
    assert [sorted(msgspec.json.decode(line)) for line in lines] == [["dead"], ["resent"]]
