"""The ``recoverkit`` command, run in-process through ``main()`` and once as ``python -m recoverkit``."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest

from recoverkit import (
    ChannelPolicy,
    Config,
    DeadLetters,
    Engine,
    FakeClock,
    Flow,
    FlowStep,
    MemoryChannel,
    PermanentDeliveryError,
)
from recoverkit.cli import main

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # short relative paths make the assertions below easy to read


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err  # as written: an error is one line however long, so no unwrapping here


def events_file(path: Path) -> Path:
    t = T0
    lines = [
        {"event": "identify", "session_id": "a", "customer_id": "ca", "email": "ca@example.com", "ts": t},
        {"event": "consent", "session_id": "a", "customer_id": "ca", "granted": ["email"], "ts": t},
        {
            "event": "add_to_cart",
            "session_id": "a",
            "ts": t,
            "items": [{"item_id": "SKU-1", "price": "9.99"}],
        },
        {"event": "page_view", "session_id": "z", "ts": t + 7200},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n")
    return path


# -- demo ----------------------------------------------------------------------------------------------------


def test_demo_prints_the_messages_recoverkit_would_send(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "demo", "--limit", "3")
    assert code == 0
    assert "messages recoverkit would send" in out
    assert "@example.invalid" not in out  # addresses are masked
    assert "more (--limit N to see them)" in out


def test_demo_explains_why_it_converts_more_than_it_has_carts(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "demo", "--limit", "1")
    assert code == 0
    carts, converted = map(int, re.search(r"carts: ([\d,]+)   converted: ([\d,]+)", out).groups())  # type: ignore[union-attr]
    assert converted > carts  # the REES46 slice: many purchases without a cart event
    found = re.search(r"converted counts every purchase: ([\d,]+) of the ([\d,]+) were in sessions with no cart", out)
    assert found is not None
    cartless = int(found[1].replace(",", ""))
    assert int(found[2]) == converted
    assert 0 < converted - cartless <= carts  # those left bought a tracked cart, at most once each


def test_python_dash_m_recoverkit_demo_runs_in_a_fresh_process(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "recoverkit", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "messages recoverkit would send" in done.stdout
    assert "Traceback" not in done.stderr


# -- replay --------------------------------------------------------------------------------------------------


def test_replay_json_prints_the_summary_as_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "fast.toml"
    config.write_text('abandon_after = 600\n[[flows]]\nname = "f"\n[[flows.steps]]\ndelay = 60\n')
    code, out, _ = run(
        capsys, "replay", str(events_file(tmp_path / "e.jsonl")), "--config", "fast.toml", "--json"
    )
    assert code == 0
    summary = json.loads(out)
    assert {"events", "accepted", "invalid", "carts", "abandonments", "messages", "pending"} <= set(summary)
    assert (summary["events"], summary["invalid"], summary["carts"]) == (5, {"malformed_json": 1}, 1)
    assert summary["abandonments"] == {"inactivity": 1}
    assert summary["messages"] == {"f/0/email": 1}
    assert summary["statistics"]["stages"]["dispatch"]["received"] >= 1


def test_replay_freezes_what_was_there_before_for_the_replay_only(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The command's own process: what existed before the replay is left out of the collector's work during it,
    # and given back to it afterwards, also when the replay fails (in a test process, as in a shop's, nothing
    # stays frozen).
    import gc

    import recoverkit.replay

    seen: list[int] = []
    replay = recoverkit.replay.replay

    async def watching(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.get_freeze_count())
        return await replay(*args, **kwargs)

    monkeypatch.setattr(recoverkit.replay, "replay", watching)
    before = gc.get_freeze_count()
    assert run(capsys, "replay", str(events_file(tmp_path / "e.jsonl")))[0] == 0
    assert run(capsys, "replay", str(tmp_path / "missing.jsonl"))[0] == 1
    assert seen and seen[0] > before and gc.get_freeze_count() == before


def test_replay_prints_a_readable_summary(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "replay", str(events_file(tmp_path / "e.jsonl")))
    assert code == 0
    assert "5 events (4 accepted, 1 invalid, 0 late)" in out
    assert "invalid events by reason: malformed_json 1" in out


def test_replay_out_writes_the_messages(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, _ = run(capsys, "replay", str(events_file(tmp_path / "e.jsonl")), "--out", "m.jsonl", "--json")
    assert code == 0
    (message,) = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert message["key"] == "a/cart-recovery/0"


def test_replay_of_a_missing_file_exits_1_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "replay", "no-such-events.jsonl")
    assert code == 1
    assert "error:" in err and "No such file or directory" in err and "no-such-events.jsonl" in err
    assert "Traceback" not in err and out == ""


def test_replay_of_a_truncated_gzip_file_names_it_says_how_far_it_got_and_still_summarises(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = [json.dumps({"event": "page_view", "session_id": f"s{i}", "ts": T0 + i}) for i in range(20_000)]
    packed = gzip.compress("\n".join(lines).encode() + b"\n")
    (tmp_path / "cut.jsonl.gz").write_bytes(packed[: len(packed) // 2])
    code, out, err = run(capsys, "replay", "cut.jsonl.gz", "--json")
    assert code == 1
    (error,) = [line for line in err.splitlines() if line.startswith("error:")]
    read = int(re.search(r"read ([\d,]+) line\(s\) whole", error)[1].replace(",", ""))  # type: ignore[index]
    assert "cut.jsonl.gz" in error and "truncated" in error
    assert 0 < read < 20_000
    summary = json.loads(out)  # the summary of what was read is still printed
    assert summary["accepted"] == summary["lines"] == read


def test_replay_warnings_name_the_line_of_the_input_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    good = json.dumps({"event": "page_view", "session_id": "s", "ts": T0})
    millis = json.dumps({"event": "page_view", "session_id": "s", "ts": T0 * 1000})
    (tmp_path / "e.jsonl").write_text(f"{good}\n\nnot json\n{good}\n\n{millis}\n{good}\n")
    code, out, err = run(capsys, "replay", "e.jsonl")
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("line ")]
    assert [w.split(":")[0] for w in warnings] == ["line 3", "line 6"]
    assert "malformed JSON" in warnings[0] and "milliseconds" in warnings[1]
    assert "5 events (3 accepted, 2 invalid, 0 late)" in out
    assert "invalid events by reason: malformed_json 1, bad_value 1" in out
    assert "invalid_event" not in err  # the journal's line-less records are not repeated


def test_replay_exits_1_when_no_event_is_valid(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('not json\n{"event": "add-to-cart", "session_id": "s"}\n')
    code, out, err = run(capsys, "replay", "bad.jsonl")
    assert code == 1
    assert "2 events (0 accepted, 2 invalid, 0 late)" in out
    assert "error: bad.jsonl: none of its 2 event(s) is valid" in err


def test_replay_of_an_empty_file_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n")
    code, _, err = run(capsys, "replay", "empty.jsonl")
    assert code == 1
    assert "error: empty.jsonl: no events to replay" in err


def test_resuming_a_finished_replay_exits_1_having_nothing_left(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    events = str(events_file(tmp_path / "e.jsonl"))
    assert run(capsys, "replay", events, "--store", "s.db", "--out", "m.jsonl")[0] == 0
    sent = (tmp_path / "m.jsonl").read_text()
    assert sent
    code, _, err = run(capsys, "replay", events, "--store", "s.db", "--out", "m.jsonl", "--resume")
    assert code == 1
    assert "error: nothing left to replay" in err and "all 4 valid events" in err
    assert (tmp_path / "m.jsonl").read_text() == sent  # appended to, not emptied


def test_replaying_into_a_used_store_without_resume_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    events = str(events_file(tmp_path / "e.jsonl"))
    assert run(capsys, "replay", events, "--store", "s.db")[0] == 0
    code, out, err = run(capsys, "replay", events, "--store", "s.db")
    assert code == 1
    assert "s.db: the journal already holds 4 events of an earlier replay" in err and "--resume" in err
    assert out == ""


def test_replay_with_a_bad_config_file_exits_2_naming_file_key_and_value(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "bad.toml").write_text('abandon_after = "soon"\n')
    code, out, err = run(capsys, "replay", str(events_file(tmp_path / "e.jsonl")), "--config", "bad.toml")
    assert code == 2
    assert "configuration error: bad.toml: invalid configuration at `abandon_after`" in err
    assert "'soon'" in err and "Expected `float`" in err
    assert out == ""


def test_a_config_error_is_printed_literally_not_as_markup(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "bad.toml").write_text(
        '[[flows]]\nname = "[/bold] Black Friday"\n[[flows.steps]]\ndelay = 60\n'
    )
    code, _, err = run(capsys, "check-config", "bad.toml")
    assert code == 2
    assert "`flows[0].name`" in err
    assert "'[/bold] Black Friday'" in err  # the value as written
    assert "^[a-z][a-z0-9_-]{0,31}$" in err  # and the pattern it should match


def test_replay_reads_stdin_for_dash(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "recoverkit", "replay", "-", "--json"],
        input=events_file(tmp_path / "e.jsonl").read_bytes(),
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["events"] == 5


# -- check-config and bench ----------------------------------------------------------------------------------


def test_check_config_accepts_a_valid_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "ok.toml").write_text(
        'abandon_after = 900\n[[flows]]\nname = "f"\n[[flows.steps]]\ndelay = 60\n'
    )
    code, out, _ = run(capsys, "check-config", "ok.toml")
    assert code == 0
    assert "ok.toml: ok (1 flow(s): f)" in out


def test_check_config_of_a_missing_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "check-config", "missing.toml")
    assert code == 2
    assert "missing.toml: configuration file not found" in err


def test_check_config_names_the_key_path_of_a_channel_nothing_serves(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "typo.toml").write_text(
        '[[flows]]\nname = "f"\n[[flows.steps]]\ndelay = 60\n[[flows.steps]]\ndelay = 600\nchannel = "emial"\n'
    )
    code, out, err = run(capsys, "check-config", "typo.toml")
    assert code == 2
    assert "configuration error: typo.toml: `flows[0].steps[1].channel` is 'emial'" in err
    assert "email" in err and "[channels.emial]" in err
    assert out == ""


def test_check_config_accepts_a_channel_of_your_own_declared_under_channels(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "own.toml").write_text(
        '[channels.pigeon]\naddress = "none"\n[[flows]]\nname = "f"\n[[flows.steps]]\ndelay = 60\nchannel = "pigeon"\n'
    )
    assert run(capsys, "check-config", "own.toml")[0] == 0


@pytest.mark.parametrize(
    ("toml", "variable"),
    [
        ('[offers.ten]\nkind = "discount"\nname = "10% off"\npercent = 10\n'
         '[[flows]]\nname = "f"\n[[flows.steps]]\ndelay = 60\n'
         'offer = "ten"\n', "RECOVERKIT_CODE_SECRET"),
        ('[links]\nbase_url = "https://shop.example/restore"\n', "RECOVERKIT_LINK_SECRET"),
    ],
    ids=["codes", "links"],
)  # fmt: skip
def test_check_config_refuses_a_config_whose_secret_is_missing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, variable: str
) -> None:
    monkeypatch.delenv(variable, raising=False)
    (tmp_path / "shop.toml").write_text(toml)
    code, _, err = run(capsys, "check-config", "shop.toml")
    assert code == 2
    assert f"environment variable {variable}" in err and "missing" in err
    monkeypatch.setenv(variable, "s" * 8)
    code, _, err = run(capsys, "check-config", "shop.toml")
    assert code == 2 and "too short" in err
    monkeypatch.setenv(variable, "s" * 48)
    assert run(capsys, "check-config", "shop.toml")[0] == 0
    monkeypatch.delenv(variable)
    assert run(capsys, "check-config", "shop.toml", "--no-secrets")[0] == 0


def test_check_config_of_invalid_toml_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text("abandon_after = \n")
    code, _, err = run(capsys, "check-config", "broken.toml")
    assert code == 2
    assert "broken.toml: not valid TOML" in err


def test_bench_reports_a_positive_ratio_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "bench", "--sessions", "300", "--repeat", "1", "--memory-carts", "1000", "--json"
    )
    assert code == 0
    report = json.loads(out)
    assert report["ratio"] > 0
    assert report["events"] > 0 and report["memory_carts"] == 1000
    assert [stage["name"] for stage in report["stages"]] == [
        "ingest",
        "sessionize",
        "score",
        "route",
        "dispatch",
    ]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["replay"])
    assert info.value.code == 2
    assert "events" in capsys.readouterr().err


# -- dead letters --------------------------------------------------------------------------------------------


def dead_letter_file(path: Path, carts: int = 2) -> Path:
    """Let an engine dead-letter one message per cart (the provider rejects every address)."""
    config = Config(
        abandon_after=60,
        flows=[Flow(name="f", steps=[FlowStep(delay=0, channel="webhook")])],
        channels={"webhook": ChannelPolicy(address="none", requires_consent=False)},
    )
    channel = MemoryChannel()
    channel.fail_next(carts, PermanentDeliveryError("HTTP 410 from the provider"))

    async def go() -> None:
        clock = FakeClock(T0)
        async with Engine(config, channels={"webhook": channel}, clock=clock, dead_letters=path) as engine:
            for i in range(carts):
                engine.track(
                    {"event": "add_to_cart", "session_id": f"cart{i}", "items": [{"item_id": "SKU-1"}]}
                )
            await engine.flush()
            clock.advance(60)
            await engine.flush()

    anyio.run(go)
    assert len(DeadLetters(path)) == carts
    return path


def test_dead_letters_list_shows_the_letters_of_an_engine(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    dead_letter_file(tmp_path / "dead.jsonl")
    code, out, _ = run(capsys, "dead-letters", "list", "dead.jsonl")
    assert code == 0
    assert "dead letters in dead.jsonl: 2" in out
    assert "cart0/f/0" in out and "cart1/f/0" in out
    assert "HTTP 410" in out


class Receiver:
    """A real HTTP server on localhost that records what was POSTed and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.keys: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.keys.append(self.headers["Idempotency-Key"])
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/cart"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def test_dead_letters_list_json_is_one_document_without_recipients(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    dead_letter_file(tmp_path / "dead.jsonl")
    capsys.readouterr()  # what the engine logged while making the file
    code, out, _ = run(capsys, "dead-letters", "list", "dead.jsonl", "--json")
    assert code == 0
    document = json.loads(out)
    assert document["file"] == "dead.jsonl"
    letters = sorted(document["letters"], key=lambda letter: letter["key"])
    assert [letter["key"] for letter in letters] == ["cart0/f/0", "cart1/f/0"]
    assert set(letters[0]) == {"key", "channel", "attempts", "at", "permanent", "error"}  # no recipient
    assert letters[0]["permanent"] is True and "HTTP 410" in letters[0]["error"]
    assert letters[0]["channel"] == "webhook" and letters[0]["at"] == T0 + 60


@pytest.mark.parametrize("action", [["list"], ["list", "--json"], ["resend", "--webhook", "http://127.0.0.1:9/x"]])
def test_dead_letters_of_a_missing_file_is_an_error_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, action: list[str]
) -> None:
    code, out, err = run(capsys, "dead-letters", action[0], "no-such-dead.jsonl", *action[1:])
    assert code == 2 and out == ""
    assert err == (
        "error: no-such-dead.jsonl: no such dead-letter file; expected the file given as Engine(dead_letters=...)\n"
    )
    assert not (tmp_path / "no-such-dead.jsonl").exists()


def test_dead_letters_json_is_for_list_only(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    dead_letter_file(tmp_path / "dead.jsonl")
    code, _, err = run(capsys, "dead-letters", "resend", "dead.jsonl", "--webhook", "http://127.0.0.1:9/x", "--json")
    assert code == 2 and "--json is for list" in err
    assert len(DeadLetters(tmp_path / "dead.jsonl")) == 2


def test_dead_letters_resend_posts_each_letter_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    dead_letter_file(tmp_path / "dead.jsonl")
    with Receiver() as receiver:
        code, out, _ = run(capsys, "dead-letters", "resend", "dead.jsonl", "--webhook", receiver.url)
        assert code == 0
        assert "re-sent 2, still failing 0" in out
        assert sorted(receiver.keys) == ["cart0/f/0", "cart1/f/0"]

        code, out, _ = run(capsys, "dead-letters", "resend", "dead.jsonl", "--webhook", receiver.url)
        assert code == 0
        assert "re-sent 0, still failing 0" in out
        assert len(receiver.keys) == 2
    assert len(DeadLetters(tmp_path / "dead.jsonl")) == 0


def test_dead_letters_resend_of_one_key_leaves_the_others(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    dead_letter_file(tmp_path / "dead.jsonl")
    with Receiver() as receiver:
        code, out, _ = run(
            capsys, "dead-letters", "resend", "dead.jsonl", "--webhook", receiver.url, "--key", "cart1/f/0"
        )
    assert (code, receiver.keys) == (0, ["cart1/f/0"])
    assert "re-sent 1, still failing 0" in out
    assert [letter.message.key for letter in DeadLetters(tmp_path / "dead.jsonl")] == ["cart0/f/0"]


def test_dead_letters_resend_that_still_fails_exits_1_and_keeps_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    dead_letter_file(tmp_path / "dead.jsonl")
    with Receiver(status=503) as receiver:
        code, out, err = run(capsys, "dead-letters", "resend", "dead.jsonl", "--webhook", receiver.url)
    assert code == 1
    assert "re-sent 0, still failing 2" in out
    assert "still failing" in err and "HTTP 503" in err
    assert "/hooks/cart" not in err  # the webhook path may hold a token; only the host is named
    assert len(DeadLetters(tmp_path / "dead.jsonl")) == 2


def test_dead_letters_resend_needs_a_webhook(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["dead-letters", "resend", "dead.jsonl"])
    assert info.value.code == 2
    assert "--webhook" in capsys.readouterr().err


# -- replay --store: killed, then resumed at once --------------------------------------------------------------

KILL_CONFIG = """
abandon_after = 600
[store]
lease_ttl = 3
[channels.webhook]
address = "none"
requires_consent = false
[[flows]]
name = "f"
[[flows.steps]]
delay = 60
channel = "webhook"
[[flows.steps]]
delay = 3600
channel = "webhook"
"""


def message_keys(path: Path) -> list[str]:
    return [json.loads(line)["key"] for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_replay_killed_mid_run_and_resumed_at_once_decides_every_message_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from recoverkit.store import SQLiteStore
    from recoverkit.synthetic import generate_jsonl

    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in generate_jsonl(1000, seed=3)))
    (tmp_path / "c.toml").write_text(KILL_CONFIG)
    # The reference: the same replay, never interrupted.
    reference = ["events.jsonl", "--config", "c.toml", "--store", "ref.db", "--out", "ref.jsonl"]
    assert run(capsys, "replay", *reference)[0] == 0
    reference = message_keys(tmp_path / "ref.jsonl")
    assert len(reference) > 200 and len(set(reference)) == len(reference)

    command = [sys.executable, "-m", "recoverkit", "replay", "events.jsonl", "--config", "c.toml",
               "--store", "s.db", "--out", "out.jsonl", "--no-progress"]  # fmt: skip
    first = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while len(message_keys(tmp_path / "out.jsonl")) < len(reference) // 4:
            assert first.poll() is None, "the replay finished before it could be killed: give it more events"
            time.sleep(0.005)
    finally:
        first.kill()  # SIGKILL: no clean-up, its lease stays valid for up to lease_ttl
        first.wait()
    written_before = len(message_keys(tmp_path / "out.jsonl"))
    assert written_before < len(reference)

    resumed = subprocess.run([*command, "--resume", "--json"], cwd=tmp_path, capture_output=True, timeout=120)
    stderr = resumed.stderr.decode()
    assert resumed.returncode == 0, stderr
    if "waiting" in stderr:  # the lease was still valid: it said what it waited for, then took over
        assert re.search(rf"waiting for the pipeline lease of s\.db, held by .*:{first.pid}:", stderr), stderr
        assert f"process {first.pid}, which no longer runs" in stderr
        assert "took over the pipeline lease" in stderr

    written = message_keys(tmp_path / "out.jsonl")
    assert written[:written_before] == message_keys(tmp_path / "out.jsonl")[:written_before]  # appended to
    assert len(written) == len(set(written)), "a message was written twice"
    with SQLiteStore(tmp_path / "s.db") as store:
        ledger = {entry.key: entry.state for entry in store.ledger()}
    sent = {key for key, state in ledger.items() if state == "sent"}
    unknown = {key for key, state in ledger.items() if state == "unknown"}  # the kill fell mid-send
    assert sent <= set(written), "the ledger says sent, but --out lacks the message"
    assert set(written) <= sent | unknown
    assert set(written) | unknown == set(reference), "a message was lost, or one was made up"
    summary = json.loads(resumed.stdout)
    assert summary["processed"] > 0 and summary["resumed_after"] > 0
