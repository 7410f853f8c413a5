"""``recoverkit preview``: render a template for the sample cart and print it as is."""

from __future__ import annotations

from pathlib import Path

import pytest

from recoverkit.cli import main


def preview(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["preview", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_preview_prints_the_subject_and_text_of_a_built_in_email(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = preview(capsys, "cart-reminder")
    assert status == 0 and err == ""
    assert out.startswith("Subject: Get 10% off on the items in your cart\n\nHello,\n")
    assert "  1 x Enamel mug    19.99 EUR\n" in out
    assert "Total: 35.79 EUR plus 4.90 EUR shipping\n" in out
    assert "Use code COMEBACK10 for 10% off, until 2026-01-04 00:00 UTC." in out
    assert "https://shop.example/cart/restore?token=sample" in out
    assert "Stop these emails: https://shop.example/unsubscribe/sample" in out


def test_preview_prints_the_html_part(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = preview(capsys, "cart-last-call", "--format", "html")
    assert status == 0
    assert out.startswith("Subject: Last call: 10% off until 2026-01-04 00:00 UTC\n\n<!DOCTYPE html>")
    assert '<a href="https://shop.example/cart/restore?token=sample"' in out


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ("sms", "You left 3 items (35.79 EUR) in your cart. Get 10% off with code COMEBACK10. "
                "https://shop.example/cart/restore?token=sample\n"),
        ("push", "You left 3 items in your cart. Get 10% off with code COMEBACK10.\n"),
    ],
)  # fmt: skip
def test_preview_prints_the_short_text_of_sms_and_push(
    capsys: pytest.CaptureFixture[str], channel: str, expected: str
) -> None:
    status, out, _ = preview(capsys, "cart-reminder", "--channel", channel)
    assert status == 0
    assert out == expected


def test_preview_uses_the_shops_templates_before_the_built_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "cart-reminder.sms.txt").write_text("[b]{{ cart.value }}[/b] <i>{{ offer.code }}</i>\n")
    status, out, _ = preview(capsys, "cart-reminder", "--templates", str(tmp_path), "--channel", "sms")
    assert status == 0
    assert out == "[b]35.79 EUR[/b] <i>COMEBACK10</i>\n"  # as rendered: no rich markup, no escaping in text
    status, out, _ = preview(capsys, "cart-last-call", "--templates", str(tmp_path), "--channel", "sms")
    assert status == 0 and out.startswith("Last call for your cart")  # not in the folder: the built-in one


def test_preview_of_a_missing_template_names_it_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = preview(capsys, "cart-remindr")
    assert status == 2 and out == ""
    assert "template 'cart-remindr' (email) not found: no cart-remindr.txt" in err


def test_preview_of_a_template_with_a_typo_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "promo.subject.txt").write_text("Hello")
    (tmp_path / "promo.txt").write_text("Hello\n{{ cart.vlaue }}\n")
    status, out, err = preview(capsys, "promo", "--templates", str(tmp_path))
    assert status == 2 and out == ""
    assert "promo.txt line 2" in err and "vlaue" in err
    assert err.count("\n") == 1  # one line, however long the temporary path


def test_preview_of_a_template_reaching_for_internals_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "evil.sms.txt").write_text("{{ cart.__class__.__init__.__globals__ }}")
    status, out, err = preview(capsys, "evil", "--templates", str(tmp_path), "--channel", "sms")
    assert status == 2 and out == ""
    assert "SecurityError" in err and "unsafe" in err


def test_preview_html_of_an_sms_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = preview(capsys, "cart-reminder", "--channel", "sms", "--format", "html")
    assert status == 2 and out == ""
    assert "--format html is for email; sms messages are text only" in err


def test_preview_html_of_a_text_only_email_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "plain.subject.txt").write_text("Hi")
    (tmp_path / "plain.txt").write_text("Only text")
    status, out, err = preview(capsys, "plain", "--templates", str(tmp_path), "--format", "html")
    assert status == 2 and out == ""
    assert "has no HTML part (plain.html)" in err


def test_preview_with_a_missing_templates_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = preview(capsys, "cart-reminder", "--templates", str(tmp_path / "nope"))
    assert status == 2
    assert "is not a directory" in err
