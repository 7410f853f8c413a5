"""``manage.py recoverkit``: ``check``, ``forget`` and ``export`` through ``call_command``, and ``worker`` as the
real process it is (it handles SIGTERM, which only a process's main thread may)."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

try:  # tests/contrib is a plain directory; should it become a package, its modules import relatively
    from django_support import EXAMPLE, setup
except ImportError:  # pragma: no cover
    from .django_support import EXAMPLE, setup

setup()

from django.core.management import CommandError, call_command  # noqa: E402
from django.test import Client  # noqa: E402

import recoverkit.contrib.django as rk_django  # noqa: E402
from recoverkit import MemoryChannel  # noqa: E402
from recoverkit.contrib.django import RecoverkitState, get_engine  # noqa: E402

try:
    from django_support.fixtures import no_engine_leak, rk, secrets_env
    from django_support.processes import process_env, read_outbox, wait_for
except ImportError:  # pragma: no cover
    from .django_support.fixtures import no_engine_leak, rk, secrets_env
    from .django_support.processes import process_env, read_outbox, wait_for

__all__ = ["no_engine_leak", "rk", "secrets_env"]  # fixtures used by name

OFFERS = {
    "links": {"base_url": "https://shop.example/cart/restore"},
    "offers": {"ten": {"kind": "discount", "name": "10% off", "percent": 10}},
    "flows": [{"name": "f", "steps": [{"delay": 60, "channel": "email", "offer": "ten"}]}],
}


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("recoverkit", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def failure(*args: str) -> CommandError:
    with pytest.raises(CommandError) as raised:
        run(*args)
    return raised.value


# -- check ---------------------------------------------------------------------------------------------------------


def test_check_prints_the_effective_settings_and_never_a_secret(
    rk: Callable[..., RecoverkitState], secrets_env: dict[str, str], tmp_path: Path
) -> None:
    rk(CONFIG=OFFERS, STORE=str(tmp_path / "rk.db"), CHANNELS={"email": MemoryChannel()},
       CHECKOUT_PATHS={"/checkout": "begin_checkout"})
    output, _ = run("check")
    lines = output.splitlines()
    assert lines[0] == (
        "mode: embedded (every web process runs the engine; with a shared store one at a time runs the pipeline)"
    )
    assert f"store: {tmp_path / 'rk.db'}" in lines
    assert "channels: email=MemoryChannel" in lines
    assert "flow f: email after 60 s" in lines
    assert "checkout paths: /checkout -> begin_checkout" in lines
    assert "session cookie: rk_sid (HttpOnly, SameSite=Lax, Secure when the request is HTTPS)" in lines
    assert "restore links: https://shop.example/cart/restore (secret RECOVERKIT_LINK_SECRET: set)" in lines
    assert "codes: ten (secret RECOVERKIT_CODE_SECRET: set)" in lines
    assert lines[-1] == "ok"
    for secret in secrets_env.values():
        assert secret not in output


@pytest.mark.parametrize(
    ("value", "status"), [(None, "missing"), ("short", "too short (5 bytes; expected at least 32)")]
)
def test_check_fails_with_status_2_when_a_needed_secret_is_missing(
    rk: Callable[..., RecoverkitState], monkeypatch: pytest.MonkeyPatch, value: str | None, status: str
) -> None:
    monkeypatch.setenv("RECOVERKIT_CODE_SECRET", "c" * 40)
    if value is None:
        monkeypatch.delenv("RECOVERKIT_LINK_SECRET", raising=False)
    else:
        monkeypatch.setenv("RECOVERKIT_LINK_SECRET", value)
    rk(CONFIG=OFFERS, MODE="off")  # "off" builds no engine, so start-up does not catch it first
    error = failure("check")
    assert error.returncode == 2
    assert f"restore links need the environment variable RECOVERKIT_LINK_SECRET: {status}" in str(error)


@pytest.mark.parametrize("command", [["worker"], ["forget", "c-1"], ["export", "c-1"]])
def test_commands_on_the_store_refuse_a_store_in_memory(
    rk: Callable[..., RecoverkitState], command: list[str]
) -> None:
    rk(CHANNELS={"email": MemoryChannel()})
    error = failure(*command)
    assert error.returncode == 2
    assert "the state is in memory, inside each web process" in str(error)
    assert "settings.RECOVERKIT['STORE']" in str(error)


def test_an_unknown_action_is_a_usage_error() -> None:
    with pytest.raises(CommandError, match="invalid choice: 'wroker'"):
        run("wroker")


# -- forget and export ---------------------------------------------------------------------------------------------


def test_export_then_forget_a_customer_in_the_shared_store(
    rk: Callable[..., RecoverkitState], tmp_path: Path
) -> None:
    rk(STORE=str(tmp_path / "rk.db"), CHANNELS={"email": MemoryChannel()})
    Client().get("/t/shop/c-1")
    Client().get("/t/shop/c-2")
    rk_django.flush()
    rk_django.close()  # the web process stops: the command's engine takes the lease and has the whole state

    exported = json.loads(run("export", "c-1")[0])
    assert exported["customer_id"] == "c-1" and exported["complete"] is True
    assert exported["contact"]["email"] == "c-1@example.com"
    assert [cart["cart_key"] for cart in exported["carts"]] == ["cart-c-1"]

    output, _ = run("forget", "c-1")
    # The report says exactly what went, and never the customer's data.
    assert output.startswith("erased from the engine and the store:")
    assert "carts (with their events in the journal): 1" in output
    assert "contact details and consent: 1" in output
    assert "WAL: checkpointed into the main file and truncated" in output
    assert "LEFT" not in output and "c-1@example.com" not in output
    after = json.loads(run("export", "c-1")[0])
    assert after["carts"] == [] and after["contact"] is None
    assert json.loads(run("export", "c-2")[0])["contact"]["email"] == "c-2@example.com"


def test_forget_while_a_web_process_holds_the_store_is_carried_out_by_it(
    rk: Callable[..., RecoverkitState], tmp_path: Path
) -> None:
    rk(STORE=str(tmp_path / "rk.db"), CHANNELS={"email": MemoryChannel()})
    Client().get("/t/shop/c-1")
    rk_django.flush()  # the web engine runs and holds the pipeline lease
    output, _ = run("forget", "c-1")
    assert output.startswith("requested:")
    engine = get_engine()
    assert engine is not None
    deadline = time.monotonic() + 60
    while engine.export("c-1")["contact"] is not None:  # the web engine reads the request from the journal
        assert time.monotonic() < deadline, "the running engine did not carry out the forget request"
        time.sleep(0.05)
        rk_django.flush()


def test_export_of_an_empty_customer_id_is_a_usage_error(rk: Callable[..., RecoverkitState], tmp_path: Path) -> None:
    rk(STORE=str(tmp_path / "rk.db"), CHANNELS={"email": MemoryChannel()})
    error = failure("export", " ")
    assert error.returncode == 2 and "CUSTOMER" in str(error)


# -- the worker, as a process ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_worker_runs_the_pipeline_for_journal_mode_web_processes_and_stops_on_sigterm(
    rk: Callable[..., RecoverkitState], secrets_env: dict[str, str], tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox.jsonl"
    # This test process is a web process in mode "journal": it writes events into the shared store and nothing here
    # runs the pipeline.
    rk(MODE="journal", STORE=str(tmp_path / "rk.db"), CHANNELS={"email": MemoryChannel()})
    Client().get("/t/shop/c-1")
    rk_django.flush()
    assert read_outbox(outbox) == []

    worker = subprocess.Popen(
        [sys.executable, str(EXAMPLE / "manage.py"), "recoverkit", "worker"],
        env=process_env(tmp_path, "journal"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        sent = wait_for(lambda: read_outbox(outbox), "the worker to send the message")
        assert [(m["key"], m["to"], m["pid"]) for m in sent] == [("cart-c-1/now/0", "c-1@example.com", worker.pid)]
        assert sent[0]["restore_url"].startswith("http://127.0.0.1:8000/cart/restore?t=")
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, err
    assert "running the pipeline" in err and "SIGTERM: draining and stopping" in err
    assert err.rstrip().endswith("recoverkit worker: stopped")
    assert len(read_outbox(outbox)) == 1


@pytest.mark.slow
def test_a_configuration_problem_stops_the_worker_before_it_starts_and_names_the_setting(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE / "manage.py"), "recoverkit", "worker"],
        env=process_env(tmp_path, "embeded"), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode != 0
    assert "settings.RECOVERKIT['MODE']: 'embeded' is not a mode" in done.stderr
