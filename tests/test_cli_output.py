"""What the ``recoverkit`` command writes: whole lines for logs and pipes, --json, progress lines, no rich needed."""

from __future__ import annotations

import io
import json
import os
import re
import selectors
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recoverkit._cli_output import PROGRESS_INTERVAL_ENV, Out, Table, Ticker, escape, strip_markup
from recoverkit.cli import main
from recoverkit.errors import ConfigError
from recoverkit.store import PIPELINE_LEASE, SQLiteStore

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def deep_dir(root: Path, length: int = 240) -> Path:
    """A directory under ``root`` whose path is at least ``length`` characters: longer than any terminal."""
    path = root
    while len(str(path)) < length:
        path = path / "a-rather-long-directory-name"
    path.mkdir(parents=True)
    return path


def recoverkit(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m recoverkit`` in a real process, its stdout and stderr pipes (not terminals)."""
    return subprocess.run(
        [sys.executable, "-m", "recoverkit", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


# -- errors are one line ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_error_naming_a_long_path_is_one_line_in_a_real_process(tmp_path: Path) -> None:
    not_a_db = deep_dir(tmp_path) / "state.db"
    not_a_db.write_text("hello\n" * 500)
    done = recoverkit("db", "check", str(not_a_db))
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert f"error: {not_a_db} is not a SQLite database; expected a recoverkit store" in lines
    assert "\x1b[" not in done.stderr  # no colour codes for a pipe


@pytest.mark.slow
def test_a_config_error_naming_a_long_path_is_one_line_in_a_real_process(tmp_path: Path) -> None:
    config = deep_dir(tmp_path) / "bad.toml"
    config.write_text('abandon_after = "soon"\n[[flows]]\nname = "[/bold] Black Friday"\n')
    done = recoverkit("check-config", str(config))
    assert done.returncode == 2
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("configuration error:")]
    assert f"configuration error: {config}: invalid configuration at `abandon_after`" in line
    assert "'soon'" in line


def test_an_error_with_line_breaks_and_brackets_is_written_as_one_literal_line() -> None:
    stream = io.StringIO()
    Out(stream).error("first [/bold] part\n  second [red]part[/]\n")
    assert stream.getvalue() == "error: first [/bold] part second [red]part[/]\n"


# -- plain output: what a pipe, a file or a log gets -----------------------------------------------------------


def test_text_that_is_not_for_a_terminal_is_plain_and_never_wrapped() -> None:
    stream = io.StringIO()
    long = "x" * 500
    Out(stream).print(f"[bold]{escape(long)}[/] and a [/literal] {escape('[red]value[/]')}")
    assert stream.getvalue() == f"{long} and a  [red]value[/]\n"


def test_a_plain_table_aligns_columns_without_trailing_spaces() -> None:
    table = Table(title="rows")
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("note")
    table.add_row("journal", "1,024", "[bold]kept[/]")
    table.add_row("meta", "1", "two\nlines")
    stream = io.StringIO()
    Out(stream).print(table)
    assert stream.getvalue().splitlines() == [
        "rows",
        "table     rows  note",
        "-------  -----  ---------",
        "journal  1,024  kept",
        "meta         1  two lines",
    ]


def test_a_row_of_the_wrong_length_is_refused_naming_both_lengths() -> None:
    table = Table()
    table.add_column("a")
    with pytest.raises(ValueError, match="a row of 2 cells; expected 1"):
        table.add_row("x", "y")


@pytest.mark.parametrize(
    "markup",
    ["plain", "[bold]b[/] c", "a \\[b] c", "a \\\\[bold]b[/]", "[red]x[/red] [link=https://x.example]y[/link]",
     "path\\", "[1, 2] [a b]", "[#ff0000]hex[/]"],
)  # fmt: skip
def test_plain_text_is_what_rich_would_show(markup: str) -> None:
    rich_markup = pytest.importorskip("rich.markup")
    assert strip_markup(markup) == rich_markup.render(markup).plain


@pytest.mark.parametrize("text", ["[/x]", "C:\\dir\\[b]", "\\[bold]", "a [b] c [/] d", "no brackets"])
def test_escaped_text_comes_out_as_written_with_and_without_rich(text: str) -> None:
    rich_markup = pytest.importorskip("rich.markup")
    assert escape(text) == rich_markup.escape(text)
    assert strip_markup(escape(text)) == text == rich_markup.render(escape(text)).plain


def test_a_trailing_backslash_is_escaped_as_rich_escapes_it() -> None:
    rich_markup = pytest.importorskip("rich.markup")
    # rich doubles it so that a tag after it stays a tag rather than an escaped "[": then one shows, as written.
    assert escape("C:\\dir\\") == rich_markup.escape("C:\\dir\\") == "C:\\dir\\\\"
    markup = escape("C:\\dir\\") + "[bold]x[/]"
    assert strip_markup(markup) == rich_markup.render(markup).plain == "C:\\dir\\x"


def test_a_terminal_gets_rich_tables() -> None:
    pytest.importorskip("rich")
    table = Table()
    table.add_column("trigger")
    table.add_row("inactivity")
    stream = io.StringIO()
    Out(stream, terminal=True).print(table)
    assert "━" in stream.getvalue() and "inactivity" in stream.getvalue()


def test_without_rich_a_terminal_gets_the_plain_table(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("rich", "rich.console", "rich.table"):
        monkeypatch.setitem(sys.modules, name, None)  # import rich... raises ImportError, as when not installed
    table = Table(title="likely reasons")
    table.add_column("reason")
    table.add_row("[bold]unknown[/]")
    stream = io.StringIO()
    out = Out(stream, terminal=True)
    out.print(table)
    out.error("no [rich]")
    assert stream.getvalue().splitlines() == ["likely reasons", "reason", "-------", "unknown", "error: no [rich]"]


@pytest.mark.slow
def test_the_cli_imports_and_runs_without_rich(tmp_path: Path) -> None:
    blocked = "import sys; sys.modules['rich'] = None\n"  # as if rich were not installed
    code = blocked + "from recoverkit.cli import main; raise SystemExit(main(['demo', '--limit', '2']))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "messages recoverkit would send" in done.stdout
    assert "Traceback" not in done.stderr


# -- --json ----------------------------------------------------------------------------------------------------


def test_db_info_json_is_one_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "state.db"
    with SQLiteStore(path) as store:
        store.append_events([b"a", b"b"], now=T0)
        store.acquire_lease(PIPELINE_LEASE, "host-1:4242", ttl=60, now=T0)
    assert main(["db", "info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["path"] == str(path) and info["last_seq"] == 2 and info["rows"]["journal"] == 2
    assert info["schema_version"] == info["supported_version"]
    assert info["leases"] == [{"name": PIPELINE_LEASE, "owner": "host-1:4242", "expires_at": T0 + 60}]


def test_db_check_json_lists_the_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "state.db"
    SQLiteStore(path).close()
    assert main(["db", "check", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"path": str(path), "ok": True, "problems": []}


# -- progress lines --------------------------------------------------------------------------------------------


def wait_for_line(stream: io.StringIO, seconds: float = 10.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if "\n" in stream.getvalue():
            return stream.getvalue().splitlines()[0]
        time.sleep(0.01)
    raise AssertionError(f"no progress line within {seconds} s")


def test_long_work_writes_progress_lines_when_stderr_is_not_a_terminal() -> None:
    stream = io.StringIO()
    done = 0
    with Ticker(Out(stream), "convert", lambda: f"{done:,} events written", interval=0.01) as ticker:
        done = 120_000
        ticker.phase = "closing"
        line = wait_for_line(stream)
    assert re.fullmatch(r"convert: 120,000 events written, closing, \d+\.\d s", line), line


def test_work_shorter_than_the_interval_writes_no_progress_line() -> None:
    stream = io.StringIO()
    with Ticker(Out(stream), "replay", interval=60):
        pass
    assert stream.getvalue() == ""


def test_a_terminal_gets_no_progress_lines() -> None:
    stream = io.StringIO()
    with Ticker(Out(stream, terminal=True), "replay", interval=0.01) as ticker:
        assert not ticker.active
        time.sleep(0.05)
    assert stream.getvalue() == ""


def test_the_progress_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROGRESS_INTERVAL_ENV, "0")
    assert not Ticker(Out(io.StringIO()), "bench").active
    monkeypatch.setenv(PROGRESS_INTERVAL_ENV, "2.5")
    assert Ticker(Out(io.StringIO()), "bench").interval == 2.5
    monkeypatch.setenv(PROGRESS_INTERVAL_ENV, "soon")
    with pytest.raises(ConfigError, match=f"{PROGRESS_INTERVAL_ENV}='soon'; expected seconds"):
        Ticker(Out(io.StringIO()), "bench")


@pytest.mark.slow
def test_a_replay_from_a_pipe_writes_progress_lines_on_stderr(tmp_path: Path) -> None:
    line = json.dumps({"event": "page_view", "session_id": "s", "ts": T0}) + "\n"
    with subprocess.Popen(
        [sys.executable, "-m", "recoverkit", "replay", "-", "--json"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, PROGRESS_INTERVAL_ENV: "0.05"},
    ) as process:
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        try:
            process.stdin.write(line.encode() * 100)
            process.stdin.flush()  # and keep stdin open: the replay waits for more, so it outlasts the interval
            progress = _read_line_starting(process.stderr, b"replay: ", seconds=60)
            process.stdin.close()
            out = process.stdout.read()  # until the replay ends
            assert process.wait(timeout=60) == 0
        finally:
            process.kill()
    assert re.fullmatch(rb"replay: [\d,]+\.\d MB read, \d+\.\d s", progress), progress
    assert json.loads(out)["events"] == 100


def _read_line_starting(stream: io.BufferedReader | object, prefix: bytes, seconds: float) -> bytes:
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)  # type: ignore[arg-type]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if selector.select(timeout=deadline - time.monotonic()):
                line = stream.readline()  # type: ignore[attr-defined]
                if line.startswith(prefix):
                    return bytes(line).rstrip(b"\n")
                if not line:
                    break
    raise AssertionError(f"no line starting {prefix!r} on stderr within {seconds} s")
