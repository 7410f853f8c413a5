"""The ``flask recoverkit`` commands: ``check``, ``forget`` and ``export`` through Flask's CLI test runner, and
``worker`` as the real process it is (it handles SIGTERM, which only a process's main thread may)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, jsonify

from recoverkit import MemoryChannel
from recoverkit.contrib.flask import Recoverkit, tracker

try:  # tests/contrib is a plain directory; should it become a package, its modules import relatively
    from flask_support import ROOT, no_thread_leak, secrets_env
except ImportError:  # pragma: no cover
    from .flask_support import ROOT, no_thread_leak, secrets_env

__all__ = ["no_thread_leak", "secrets_env"]  # fixtures used by name

OFFERS = {
    "links": {"base_url": "https://shop.example/cart/restore"},
    "offers": {"ten": {"kind": "discount", "name": "10% off", "percent": 10}},
    "flows": [{"name": "f", "steps": [{"delay": 60, "channel": "email", "offer": "ten"}]}],
}


@pytest.fixture
def apps(no_thread_leak: None) -> Iterator[Callable[..., Flask]]:
    made: list[Flask] = []

    def build(**settings: Any) -> Flask:
        app = Flask(__name__)
        settings.setdefault("CHANNELS", {"email": MemoryChannel()})
        app.config.update({f"RECOVERKIT_{key}": value for key, value in settings.items()})

        @app.get("/shop/<customer>")
        def shop(customer: str) -> Any:
            tracker.identify(customer, email=f"{customer}@example.com")
            tracker.consent(granted=["email"])
            tracker.add_to_cart([{"item_id": "SKU-1", "price": "9.90"}], currency="EUR", cart_id=f"cart-{customer}")
            return jsonify(ok=True)

        Recoverkit(app)
        made.append(app)
        return app

    yield build
    for app in made:
        Recoverkit.state(app).engine.close()


def run(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["recoverkit", *args])


# -- check ---------------------------------------------------------------------------------------------------------


def test_check_prints_the_effective_settings_and_never_a_secret(
    apps: Callable[..., Flask], secrets_env: dict[str, str], tmp_path: Path
) -> None:
    app = apps(CONFIG=OFFERS, STORE=str(tmp_path / "rk.db"), CHECKOUT_PATHS={"/checkout": "begin_checkout"})
    result = run(app, "check")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
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
        assert secret not in result.output


@pytest.mark.parametrize(
    ("value", "status"), [(None, "missing"), ("short", "too short (5 bytes; expected at least 32)")]
)
def test_check_fails_with_status_2_when_a_needed_secret_is_missing(
    apps: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch, value: str | None, status: str
) -> None:
    monkeypatch.setenv("RECOVERKIT_CODE_SECRET", "c" * 40)
    if value is None:
        monkeypatch.delenv("RECOVERKIT_LINK_SECRET", raising=False)
    else:
        monkeypatch.setenv("RECOVERKIT_LINK_SECRET", value)
    app = apps(CONFIG=OFFERS, MODE="off")  # "off" builds no engine, so init_app does not catch it first
    result = run(app, "check")
    assert result.exit_code == 2
    assert f"restore links need the environment variable RECOVERKIT_LINK_SECRET: {status}" in result.output


@pytest.mark.parametrize("command", [["worker"], ["forget", "c-1"], ["export", "c-1"]])
def test_commands_on_the_store_refuse_a_store_in_memory(apps: Callable[..., Flask], command: list[str]) -> None:
    result = run(apps(), *command)
    assert result.exit_code == 2
    assert "the state is in memory, inside each web process" in result.output
    assert "RECOVERKIT_STORE" in result.output


# -- forget and export ---------------------------------------------------------------------------------------------


def test_export_then_forget_a_customer_in_the_shared_store(apps: Callable[..., Flask], tmp_path: Path) -> None:
    app = apps(STORE=str(tmp_path / "rk.db"))
    rk: Recoverkit = Recoverkit.state(app).extension
    app.test_client().get("/shop/c-1")
    app.test_client().get("/shop/c-2")
    rk.flush(app)
    rk.close(app)  # the web process stops: the command's engine takes the lease and has the whole state

    exported = json.loads(run(app, "export", "c-1").output)
    assert exported["customer_id"] == "c-1" and exported["complete"] is True
    assert exported["contact"]["email"] == "c-1@example.com"
    assert [cart["cart_key"] for cart in exported["carts"]] == ["cart-c-1"]

    result = run(app, "forget", "c-1")
    # The report says exactly what went, and never the customer's data.
    assert result.exit_code == 0 and result.output.startswith("erased from the engine and the store:")
    assert "carts (with their events in the journal): 1" in result.output
    assert "contact details and consent: 1" in result.output
    assert "WAL: checkpointed into the main file and truncated" in result.output
    assert "LEFT" not in result.output and "c-1@example.com" not in result.output
    after = json.loads(run(app, "export", "c-1").output)
    assert after["carts"] == [] and after["contact"] is None
    assert json.loads(run(app, "export", "c-2").output)["contact"]["email"] == "c-2@example.com"


def test_forget_while_a_web_process_holds_the_store_is_carried_out_by_it(
    apps: Callable[..., Flask], tmp_path: Path
) -> None:
    app = apps(STORE=str(tmp_path / "rk.db"))
    rk: Recoverkit = Recoverkit.state(app).extension
    app.test_client().get("/shop/c-1")
    rk.flush(app)  # the web engine runs and holds the pipeline lease
    result = run(app, "forget", "c-1")
    assert result.exit_code == 0 and result.output.startswith("requested:")
    engine = rk.engine(app)
    assert engine is not None
    deadline = time.monotonic() + 60
    while engine.export("c-1")["contact"] is not None:  # the web engine reads the request from the journal
        assert time.monotonic() < deadline, "the running engine did not carry out the forget request"
        time.sleep(0.05)
        rk.flush(app)


def test_export_of_an_empty_customer_id_is_a_usage_error(apps: Callable[..., Flask], tmp_path: Path) -> None:
    result = run(apps(STORE=str(tmp_path / "rk.db")), "export", " ")
    assert result.exit_code == 2 and "CUSTOMER" in result.output


# -- the worker, as a process --------------------------------------------------------------------------------------


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return result


def read_outbox(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_the_worker_runs_the_pipeline_for_journal_mode_web_processes_and_stops_on_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_thread_leak: None
) -> None:
    env = {"RK_TEST_STORE": str(tmp_path / "rk.db"), "RK_TEST_OUTBOX": str(tmp_path / "outbox.jsonl"),
           "RK_TEST_MODE": "journal"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        import flask_process_app  # configured from the environment just set
    finally:
        sys.path.remove(str(Path(__file__).parent))

    web = flask_process_app.create_app()  # this test process is a journal-only web process
    try:
        session_id = web.test_client().get("/add").json["session_id"]
        flask_process_app.rk.flush(web)  # journaled in the shared store; nothing here runs the pipeline
        assert read_outbox(tmp_path / "outbox.jsonl") == []

        worker = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", f"{Path(flask_process_app.__file__)}:create_app",
             "recoverkit", "worker"],
            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )
        try:
            sent = wait_for(lambda: read_outbox(tmp_path / "outbox.jsonl"), "the worker to send the message")
            assert [(m["key"], m["pid"]) for m in sent] == [(f"{session_id}/now/0", worker.pid)]
            worker.send_signal(signal.SIGTERM)
            _, err = worker.communicate(timeout=60)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
        assert worker.returncode == 0, err
        assert "running the pipeline" in err and "SIGTERM: draining and stopping" in err
        assert err.rstrip().endswith("recoverkit worker: stopped")
    finally:
        flask_process_app.rk.close(web)
        sys.modules.pop("flask_process_app", None)


@pytest.mark.slow
def test_a_configuration_problem_stops_the_worker_before_it_starts_and_names_the_key(tmp_path: Path) -> None:
    env = {**os.environ, "RK_TEST_STORE": str(tmp_path / "rk.db"), "RK_TEST_OUTBOX": str(tmp_path / "o.jsonl"),
           "RK_TEST_MODE": "embeded"}
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", str(Path(__file__).parent / "flask_process_app.py:create_app"),
         "recoverkit", "worker"],
        env=env, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert done.returncode != 0
    assert "app.config['RECOVERKIT_MODE']: 'embeded' is not a mode" in done.stderr
