"""The report's period: written as a reader says it, named on the command line, and the period before it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from recoverkit.analytics._format import change, count, money, points_change
from recoverkit.analytics._format import period as period_text
from recoverkit.analytics._period import parse_period, previous_period


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        ("2026-12-01", "2026-12-08", "1-7 Dec 2026"),
        ("2026-11-28", "2026-12-05", "28 Nov - 4 Dec 2026"),
        ("2026-12-30", "2027-01-06", "30 Dec 2026 - 5 Jan 2027"),
        ("2026-12-07", "2026-12-08", "7 Dec 2026"),
        ("2026-02-01", "2026-03-01", "1-28 Feb 2026"),
        ("2026-12-01T12:00", "2026-12-08", "2026-12-01 12:00 - 2026-12-08 00:00 UTC"),
        ("2026-12-01", "2026-12-07T18:30", "2026-12-01 00:00 - 2026-12-07 18:30 UTC"),
    ],
)  # fmt: skip
def test_a_period_is_written_as_a_reader_says_it(since: str, until: str, expected: str) -> None:
    assert period_text(at(since), at(until)) == expected


def test_a_period_with_a_missing_bound_says_so() -> None:
    assert period_text(None, None) == "all time"
    assert period_text(at("2026-12-01"), None) == "from 1 Dec 2026"
    assert period_text(None, at("2026-12-08")) == "until 7 Dec 2026"


NOW = at("2026-12-08T09:30")


@pytest.mark.parametrize(
    ("text", "first", "end"),
    [
        ("last-7-days", "2026-12-01", "2026-12-08"),
        ("LAST-30-DAYS", "2026-11-08", "2026-12-08"),
        ("last-1-day", "2026-12-07", "2026-12-08"),
        ("this-month", "2026-12-01", "2026-12-09"),
        ("last-month", "2026-11-01", "2026-12-01"),
        ("2026-02", "2026-02-01", "2026-03-01"),
        ("2026-12", "2026-12-01", "2027-01-01"),
        ("2026-12-07", "2026-12-07", "2026-12-08"),
        ("2026-11-28..2026-12-04", "2026-11-28", "2026-12-05"),
        ("2026-12-30..2027-01-05", "2026-12-30", "2027-01-06"),
    ],
)  # fmt: skip
def test_a_named_period_is_whole_utc_days(text: str, first: str, end: str) -> None:
    assert parse_period(text, now=NOW) == (at(first), at(end))


def test_last_month_in_january_is_december_of_the_year_before() -> None:
    assert parse_period("last-month", now=at("2027-01-15")) == (at("2026-12-01"), at("2027-01-01"))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("last-week", "--period 'last-week'; expected last-7-days"),
        ("last-0-days", "0 days is out of range"),
        ("2026-13", "there is no month 13"),
        ("2026-12-09..2026-12-01", "it ends (2026-12-01) before it starts (2026-12-09)"),
        ("2026-12-01..tomorrow", "'tomorrow' is not a date (YYYY-MM-DD)"),
        ("2026-02-30", "'2026-02-30' is not a date"),
        ("", "--period ''"),
    ],
)  # fmt: skip
def test_a_bad_period_is_a_clear_error(text: str, why: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_period(text, now=NOW)
    assert why in str(error.value) and "2026-12-01..2026-12-07" in str(error.value)


def test_the_previous_period_has_the_same_length_and_ends_where_the_period_begins() -> None:
    since, until = parse_period("2026-12-01..2026-12-07", now=NOW)
    before = previous_period(since, until)
    assert before == (at("2026-11-24"), at("2026-12-01"))
    assert period_text(*before) == "24-30 Nov 2026"


@pytest.mark.parametrize(
    ("current", "previous", "expected"),
    [(112, 100, "+12 %"), (97, 100, "-3 %"), (5, 0, "new"), (0, 0, "±0 %"), (0, 7, "-100 %"), (100.4, 100, "±0 %"),
     (None, 5, "-"), (5, None, "-"), (1_500_000, 1_000, "+149900 %")],
)  # fmt: skip
def test_the_change_against_the_previous_period(current: float | None, previous: float | None, expected: str) -> None:
    assert change(current, previous) == expected


def test_a_rate_changes_in_percentage_points() -> None:
    assert (points_change(0.25, 0.2), points_change(0.2, 0.25), points_change(0.2, None)) == ("+5.0 pp", "-5.0 pp", "-")


def test_numbers_and_money_have_thousands_separators() -> None:
    assert count(1_234_567) == "1,234,567"
    assert money(123_456_789, "EUR") == "1,234,567.89 EUR"
    assert money(-123_456, "EUR") == "-1,234.56 EUR"
    assert money(1_234_567, "JPY") == "1,234,567 JPY"  # no minor unit
    assert money(1_234_567, "KWD") == "1,234.567 KWD"  # three decimals
