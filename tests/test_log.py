"""recoverkit's log (:mod:`recoverkit._log`): records through the standard logging module under ``recoverkit``,
one readable line plus the fields as record attributes, nothing global touched, nothing printed unless a host or
a program asks, and no personal data at any level."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from helpers import T0
from recoverkit import Config, ConsoleChannel, Engine, FakeClock, MemoryChannel
from recoverkit._log import ROOT, get_logger, host_configured, log_to_stderr, render
from recoverkit.errors import PermanentDeliveryError

ROOT_DIR = Path(__file__).resolve().parents[1]


class Records(logging.Handler):
    """Keeps every record it is given, formatted once (message and traceback) while it is still current."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.texts.append(logging.Formatter().format(record) + " " + repr(vars(record)))

    def events(self) -> list[str]:
        return [getattr(record, "event", "") for record in self.records]


@pytest.fixture
def records() -> Iterator[Records]:
    """Every record of the ``recoverkit`` hierarchy, from DEBUG up, for this test (the logger put back after)."""
    handler = Records()
    logger = logging.getLogger(ROOT)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)


# -- the records ---------------------------------------------------------------------------------------------------


def test_a_record_is_one_line_with_the_fields_as_attributes(records: Records) -> None:
    get_logger("recoverkit.engine").info("checkpoint_saved", position=42, owner="web 1", why='a "b"\nc')
    [record] = records.records
    assert (record.name, record.levelno) == ("recoverkit.engine", logging.INFO)
    assert record.getMessage() == 'checkpoint_saved position=42 owner="web 1" why="a \\"b\\"\\nc"'
    assert (record.event, record.position, record.owner) == ("checkpoint_saved", 42, "web 1")  # type: ignore[attr-defined]


def test_a_field_named_like_a_record_attribute_is_kept_under_a_trailing_underscore(records: Records) -> None:
    get_logger("recoverkit.x").warning("oops", name="n", module="m", event="page_view")
    [record] = records.records
    assert (record.name, record.module) == ("recoverkit.x", "test_log")  # logging's own, untouched
    assert (record.name_, record.module_, record.event_, record.event) == (  # type: ignore[attr-defined]
        "n", "m", "page_view", "oops"
    )
    assert record.getMessage() == "oops name=n module=m event=page_view"


def test_the_record_names_the_line_that_logged_not_the_logging_module(records: Records) -> None:
    get_logger("recoverkit.x").error("here")
    [record] = records.records
    assert record.filename == "test_log.py"
    assert record.funcName == "test_the_record_names_the_line_that_logged_not_the_logging_module"


def test_bound_fields_come_first_and_the_original_logger_is_unchanged(records: Records) -> None:
    log = get_logger("recoverkit.x")
    bound = log.bind(owner="w1", position=1)
    bound.info("taken", position=2)
    log.info("plain")
    assert [r.getMessage() for r in records.records] == ["taken owner=w1 position=2", "plain"]


def test_exception_attaches_the_traceback(records: Records) -> None:
    try:
        raise KeyError("k")
    except KeyError:
        get_logger("recoverkit.x").exception("failed", item="Cart")
    [record] = records.records
    assert record.levelno == logging.ERROR and record.exc_info is not None and record.exc_info[0] is KeyError


def test_a_disabled_level_renders_nothing(records: Records) -> None:
    class Loud:
        def __str__(self) -> str:
            raise AssertionError("rendered although the level is off")

    logging.getLogger(ROOT).setLevel(logging.INFO)
    get_logger("recoverkit.x").debug("detail", value=Loud())
    assert records.records == []


def test_a_name_outside_the_hierarchy_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'shop\.views' is outside recoverkit's hierarchy"):
        get_logger("shop.views")


def test_render_quotes_only_what_would_break_the_line() -> None:
    assert render("e", {"a": "x/y:1", "b": "", "c": None, "d": ["email", "sms"]}) == 'e a=x/y:1 b="" c=None d=email,sms'


# -- nothing global, nothing printed ---------------------------------------------------------------------------------


def test_the_library_adds_only_a_null_handler_to_its_own_logger() -> None:
    logger = logging.getLogger(ROOT)
    assert [type(h) for h in logger.handlers if not isinstance(h, Records)] == [logging.NullHandler]
    assert logger.level == logging.NOTSET and logger.propagate


def shop_events(session: str, customer: str, email: str, phone: str, t: float = 0.0) -> list[dict[str, Any]]:
    base = {"session_id": session, "customer_id": customer, "ts": T0 + t}
    return [
        {"event": "identify", **base, "email": email, "phone": phone},
        {"event": "consent", **base, "granted": ["email", "sms"]},
        {"event": "add_to_cart", **base, "currency": "EUR", "items": [{"item_id": "A", "price": "49.90"}]},
        {"event": "begin_checkout", **base},
    ]


async def run_engine(clock: FakeClock, sms: Any = None) -> None:
    channels = {"email": MemoryChannel(), "sms": sms if sms is not None else ConsoleChannel()}
    config = Config.from_dict({"abandon_after": 600, "flows": [{"name": "f", "steps": [{"delay": 0}]}]})
    async with Engine(config, channels=channels, clock=clock) as engine:
        for event in shop_events("s1", "c1", "jane@example.com", "+49 170 1234567"):
            engine.track(event)
        engine.track({"event": "identify", "session_id": "s2", "phone": 4917012345})  # invalid: logged as such
        clock.advance(601)
        await engine.flush()


@pytest.mark.anyio
async def test_running_an_engine_changes_no_logging_configuration_and_prints_nothing(
    capfd: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level, structlog.is_configured(), list(logging.getLogger(ROOT).handlers))
    await run_engine(FakeClock(T0))
    after = (list(root.handlers), root.level, structlog.is_configured(), list(logging.getLogger(ROOT).handlers))
    assert after == before
    assert capfd.readouterr() == ("", "")


_FRESH_PROCESS = textwrap.dedent(
    """
    import json, logging, sys
    root = logging.getLogger()
    def state():
        import structlog
        return [[type(h).__name__ for h in root.handlers], root.level, structlog.is_configured()]
    before = state()
    import anyio
    import recoverkit
    sys.path.insert(0, "tests")
    from test_log import run_engine
    anyio.run(run_engine, recoverkit.FakeClock(1_767_225_600.0))
    after = state()
    with open(sys.argv[1], "w") as out:
        json.dump({"before": before, "after": after,
                   "recoverkit": [type(h).__name__ for h in logging.getLogger("recoverkit").handlers]}, out)
    """
)


@pytest.mark.slow
def test_a_fresh_process_importing_recoverkit_and_running_an_engine_prints_nothing(tmp_path: Path) -> None:
    # A process of its own: the import happens here (not in a test session that imported it long ago), and the
    # warnings an engine logs would reach stderr through Python's last-resort handler without the NullHandler.
    result = tmp_path / "state.json"
    done = subprocess.run([sys.executable, "-c", _FRESH_PROCESS, str(result)], capture_output=True, text=True,
                          cwd=ROOT_DIR, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
    state = json.loads(result.read_text())
    assert state["before"] == state["after"] == [[], logging.WARNING, False]
    assert state["recoverkit"] == ["NullHandler"]


# -- programs: the CLI and the framework commands ------------------------------------------------------------------


def test_log_to_stderr_writes_to_the_current_stderr_only_and_replaces_its_handler(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root_handlers = list(logging.getLogger().handlers)
    assert log_to_stderr(logging.INFO, unless_configured=False)
    assert log_to_stderr(logging.INFO, unless_configured=False)
    get_logger("recoverkit.engine").info("engine_started", owner="w1")
    get_logger("recoverkit.engine").debug("checkpoint_saved")
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("engine_started owner=w1") == 1 and "checkpoint_saved" not in err
    assert logging.getLogger().handlers == root_handlers
    assert "INFO recoverkit.engine: engine_started owner=w1" in err


@pytest.mark.parametrize(
    "configure",
    [
        pytest.param(lambda: logging.getLogger(ROOT).setLevel(logging.CRITICAL), id="a level on recoverkit"),
        pytest.param(lambda: setattr(logging.getLogger(ROOT), "propagate", False), id="propagate off"),
        pytest.param(lambda: logging.getLogger(ROOT).addHandler(logging.StreamHandler(io.StringIO())),
                     id="a handler on recoverkit"),
    ],
)
def test_a_command_leaves_a_host_configured_logger_alone(configure: Any, capsys: pytest.CaptureFixture[str]) -> None:
    configure()
    assert host_configured()
    assert not log_to_stderr(logging.INFO, unless_configured=True)
    get_logger("recoverkit.engine").warning("lease_lost")
    assert capsys.readouterr() == ("", "")


def test_a_root_handler_counts_as_configured_and_a_null_handler_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [logging.NullHandler()])  # pytest's own capture handlers set aside
    assert not host_configured()
    monkeypatch.setattr(root, "handlers", [logging.StreamHandler(io.StringIO())])
    assert host_configured()


# -- no personal data, at any level ----------------------------------------------------------------------------------

EMAIL, PHONE, NAME = "jane.doe@example.com", "+49 170 1234567", "Jane Doe"
SECRETS = {"RECOVERKIT_CODE_SECRET": "c" * 40, "RECOVERKIT_LINK_SECRET": "l" * 40}


@pytest.mark.anyio
async def test_a_realistic_workload_logs_no_personal_data_at_debug(
    records: Records, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    clock = FakeClock(T0)
    email, sms = MemoryChannel(), ConsoleChannel()
    # A provider answer quoting the address, as SMTP servers do: the adapter's exception must not reach the log.
    email.fail_next(1, PermanentDeliveryError(f"550 <{EMAIL}>: mailbox unavailable"))
    config = Config.from_dict({
        "abandon_after": 600,
        "offers": {"ten": {"kind": "discount", "name": "10% off", "percent": 10, "valid_for": 3600}},
        "flows": [{"name": "f", "steps": [
            {"delay": 0, "channel": "email", "offer": "ten"},
            {"delay": 60, "channel": "sms", "offer": "ten"},
            {"delay": 120, "channel": "email", "offer": "ten"},
        ]}],
        "links": {"base_url": "https://shop.example/cart/restore"},
    })  # fmt: skip
    shoppers = [("s1", "c1", EMAIL, PHONE), ("s2", "c2", "max@example.org", "+33 6 12 34 56 78"),
                ("s3", "c3", "li@example.net", "+1 415 555 0100")]  # fmt: skip
    async with Engine(config, channels={"email": email, "sms": sms}, clock=clock, store=tmp_path / "rk.db",
                      dead_letters=tmp_path / "dead.jsonl") as engine:  # fmt: skip
        for session, customer, address, phone in shoppers:
            for event in shop_events(session, customer, address, phone):
                engine.track(event)
        # What a shop gets wrong: personal data in fields that fail validation, an unknown kind, a raw payload.
        engine.track({"event": "identify", "session_id": "s4", "email": EMAIL, "phone": 4917012345})
        engine.track({"event": "identify", "session_id": "s5", "email": ["not", EMAIL], "name": NAME})
        engine.track({"event": f"hello {EMAIL}", "session_id": "s6", "address": "1 Main St"})
        engine.track({"event": "add_to_cart", "session_id": "s7", "items": [{"item_id": EMAIL, "price": PHONE}]})
        for minutes in (11, 12, 13, 14):
            clock.advance(60 if minutes > 11 else 660)
            await engine.flush()
        engine.track({"event": "purchase", "session_id": "s2", "customer_id": "c2", "ts": clock.now(),
                      "transaction_id": "o-2", "value": "49.90", "currency": "EUR"})  # fmt: skip
        await engine.forget("c3")
        clock.advance(3600)
        await engine.flush()
        sent = [*email.sent, *email.attempts]
    codes = {m.offer.code for m in sent if m.offer is not None and m.offer.code}
    tokens = {m.restore_url.partition("?t=")[2] for m in sent if m.restore_url}
    assert codes and tokens, "the workload sent no code or link: it would prove nothing"
    # The workload did reach the log at each level: records from several stages, warnings among them.
    events = set(records.events())
    assert {"engine_started", "invalid_event", "dead_lettered", "recovery_message", "checkpoint_saved"} <= events
    secrets = [EMAIL, PHONE, "4917012345", NAME, "1 Main St", *codes, *tokens]
    secrets += [address for _, _, address, _ in shoppers] + [phone for _, _, _, phone in shoppers]
    for text in records.texts:
        for secret in secrets:
            assert secret not in text, f"{secret!r} logged: {text}"
