"""recoverkit.bench and ``recoverkit bench``: sizes, the synthetic file it writes, and a file cut to sizes.

What the figures are is checked by tests/test_benchmarks.py (``benchmarks/bench_pipeline.py --quick --json``) and
tests/test_cli.py; speed is never asserted.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from recoverkit.bench import parse_size, parse_sizes
from recoverkit.cli import main
from recoverkit.synthetic import generate_jsonl


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("text", "events"),
    [("2500", 2_500), ("100k", 100_000), ("100K", 100_000), ("1M", 1_000_000), ("1.5m", 1_500_000), ("10_000", 10_000)],
)
def test_a_size_is_a_number_of_events_with_k_or_m(text: str, events: int) -> None:
    assert parse_size(text) == events


@pytest.mark.parametrize("text", ["", "k", "0", "-5", "1.5", "ten", "1G", "2000M"])
def test_a_size_that_is_not_a_whole_number_of_events_is_refused_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match=f"size {text!r}; expected a whole number of events"):
        parse_size(text)


def test_sizes_are_sorted_and_each_given_once() -> None:
    assert parse_sizes("1M, 100k,1M,") == [100_000, 1_000_000]
    with pytest.raises(ValueError, match="expected sizes separated by commas"):
        parse_sizes(" , ")


def test_write_events_writes_the_browse_mix_at_the_count_asked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "shop.jsonl.gz"
    code, out, _ = run(capsys, "bench", "--write-events", str(target), "--count", "2k", "--seed", "3")
    assert code == 0 and "wrote 2,000 events (browse mix)" in out
    lines = gzip.decompress(target.read_bytes()).splitlines()
    assert lines == list(generate_jsonl(2_000, seed=3, mix="browse"))[:2_000]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sizes", "10q"], "size '10q'"),
        (["--count", "0", "--write-events", "x.jsonl"], "size '0'"),
        (["--store-kind", "memory,postgres"], "--store-kind 'memory,postgres'"),
        (["--sessions", "10", "--sizes", "1k"], "--sessions and --sizes"),
        (["a.jsonl", "--events", "b.jsonl"], "given twice"),
    ],
)
def test_bench_usage_errors_exit_2_naming_the_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, "bench", *argv)
    assert code == 2
    assert message in err
    assert not (tmp_path / "x.jsonl").exists()


@pytest.mark.slow  # four replays in child processes
def test_bench_of_a_file_measures_its_first_lines_at_each_size(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = tmp_path / "shop.jsonl.gz"
    assert main(["bench", "--write-events", str(source), "--count", "3000"]) == 0
    capsys.readouterr()
    # 5k is more than the file holds: the whole file is the last size.
    code, out, _ = run(
        capsys, "bench", "--events", str(source), "--sizes", "1k,2k,5k", "--repeat", "1", "--memory-carts", "0",
        "--json",
    )  # fmt: skip
    assert code == 0
    report = json.loads(out)
    assert [size["events"] for size in report["sizes"]] == [1_000, 2_000, 3_000]
    assert [size["stages"][0]["received"] for size in report["sizes"]] == [1_000, 2_000, 3_000]
    assert report["events"] == 3_000 and report["stores"] == ["memory"]
    assert report["sqlite_vs_memory"] is None and report["sizes"][0]["sqlite_events_per_second"] is None
    assert report["flat_cost"] == pytest.approx(
        report["sizes"][-1]["pipeline_events_per_second"] / report["sizes"][0]["pipeline_events_per_second"]
    )
    assert report["ratio"] > 0 and report["peak_rss_mib"] > 0
