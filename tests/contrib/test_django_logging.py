"""recoverkit inside a Django project's process obeys the project's ``LOGGING``: silenced, it prints nothing while
a cart goes all the way to a sent message; routed to a file, it writes structured records there (event names,
ids) and no e-mail address, phone number, discount code or restore token. Real processes, since ``LOGGING`` is
applied once per process by ``django.setup()``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

try:  # tests/contrib is a plain directory; should it become a package, its modules import relatively
    from django_support.logging_shop import EMAIL, PHONE
    from django_support.processes import process_env, read_outbox
except ImportError:  # pragma: no cover
    from .django_support.logging_shop import EMAIL, PHONE
    from .django_support.processes import process_env, read_outbox

pytestmark = pytest.mark.slow


def run_shop(directory: Path, logging: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    env = process_env(
        directory, "embedded", DJANGO_SETTINGS_MODULE="django_support.logging_settings", RK_TEST_ABANDON_AFTER="0.5",
        RK_TEST_LOGGING=json.dumps(logging),
    )  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "django_support.logging_shop"], env=env, capture_output=True,
                          text=True, timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def secrets_of(directory: Path) -> list[str]:
    """What must never be logged: the shopper's address and phone, and the code and token of the message sent."""
    [message] = read_outbox(directory / "outbox.jsonl")
    token = parse_qs(urlsplit(message["restore_url"]).query)
    tokens = [value for values in token.values() for value in values if len(value) >= 16]
    assert message["to"] == EMAIL and message["code"] and tokens, message
    return [EMAIL, PHONE, PHONE[1:].replace(" ", ""), message["code"], *tokens]


def test_a_project_that_silences_recoverkit_hears_nothing_from_it(tmp_path: Path) -> None:
    done = run_shop(tmp_path, {
        "version": 1,
        "loggers": {"recoverkit": {"handlers": [], "level": "CRITICAL", "propagate": False}},
    })  # fmt: skip
    assert secrets_of(tmp_path)  # the cart went all the way to a sent message
    assert (done.stdout, done.stderr) == ("", "")


def test_a_project_that_routes_recoverkit_to_a_file_gets_structured_records_without_personal_data(
    tmp_path: Path,
) -> None:
    log = tmp_path / "recoverkit.log"
    done = run_shop(tmp_path, {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "django_support.json_log.JsonFormatter"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log), "formatter": "json"}},
        "loggers": {"recoverkit": {"handlers": ["file"], "level": "DEBUG", "propagate": False}},
    })  # fmt: skip
    assert (done.stdout, done.stderr) == ("", "")
    text = log.read_text()
    records = [json.loads(line) for line in text.splitlines()]
    events = [record["event"] for record in records]
    for expected in ("engine_started", "pipeline_lease_taken", "invalid_event", "checkpoint_saved", "engine_stopped"):
        assert expected in events, events
    started = records[events.index("engine_started")]
    assert started["logger"] == "recoverkit.engine" and started["channels"] == ["email"]
    assert started["message"].startswith("engine_started ")
    invalid = records[events.index("invalid_event")]
    assert (invalid["level"], invalid["reason"], invalid["field"]) == ("WARNING", "wrong_type", "$.phone")
    for secret in secrets_of(tmp_path):
        assert secret not in text
