"""The HTML report: one self-contained page whose charts a real browser renders, offline, with every piece of
data escaped."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from analytics.chromium import Element, dom, hex_colour, parse, screenshot_pixels
from analytics.shop import ev, shop_events
from helpers import T0
from recoverkit.analytics import Report, build_report, render_html
from recoverkit.analytics._svg import BAR, FLAG
from recoverkit.analytics.html import CHART_IDS
from recoverkit.facts import Assignment, Conversion, MessageOutcome
from recoverkit.store import MemoryStore

HOSTILE_FLOW = "<script>alert('flow')</script>"
HOSTILE_SOURCE = '"><img src=x onerror=alert(1)>'


def hostile_store() -> MemoryStore:
    store = MemoryStore()
    facts: list[object] = []
    for i in range(40):
        group, scope = ("holdout", "global") if i % 2 else ("treatment", None)
        cart = f"k{i}"
        facts.append(Assignment(cart_key=cart, flow=HOSTILE_FLOW, group=group, scope=scope, contact_key=f"c{i}",  # type: ignore[arg-type]
                                assigned_at=T0, value=3000, currency="EUR"))  # fmt: skip
        if group == "treatment":
            facts.append(MessageOutcome(key=f"{cart}/x/0", cart_key=cart, contact_key=f"c{i}", flow=HOSTILE_FLOW,
                                        step=0, outcome="sent", at=T0 + 3600 * (i % 5), channel="email"))  # fmt: skip
        if i % 3 == 0:
            facts.append(Conversion(cart_key=cart, contact_key=f"c{i}", at=T0 + 86_400, value=3000, currency="EUR"))
    store.record_facts(facts)  # type: ignore[arg-type]
    return store


def report(tmp_path: Path) -> Report:
    events = [*shop_events(), ev("view_item", "s9", 6000, source=HOSTILE_SOURCE)]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events))
    return build_report(store=hostile_store(), events=path, now=T0 + 10 * 86_400)


@pytest.fixture
def page(tmp_path: Path) -> Path:
    out = tmp_path / "report.html"
    out.write_text(render_html(report(tmp_path)), encoding="utf-8")
    return out


def test_the_page_loads_nothing_from_anywhere(page: Path) -> None:
    html = page.read_text()
    assert "default-src 'none'" in html  # the browser refuses any fetch, should one slip in
    tree = parse(html)
    elements = [e for tag in ("link", "script", "img", "iframe", "object", "embed", "use", "image")
                for e in tree.find_all(tag)]  # fmt: skip
    assert elements == []
    every = _all(tree)
    assert [e.tag for e in every if {"src", "href", "xlink:href"} & set(e.attrs)] == []
    (style,) = tree.find_all("style")
    assert "url(" not in style.text and "@import" not in style.text


def _all(element: Element) -> list[Element]:
    found = []
    for child in element.children:
        found.append(child)
        found.extend(_all(child))
    return found


def test_data_is_escaped_everywhere(page: Path) -> None:
    html = page.read_text()
    assert HOSTILE_FLOW not in html and "<img" not in html
    assert "&lt;script&gt;alert(" in html  # shown as text, in tables and in the charts' own text


def test_every_chart_is_an_svg_with_a_title(page: Path) -> None:
    tree = parse(page.read_text())
    charts = {svg.attrs["id"]: svg for svg in tree.find_all("svg")}
    assert set(charts) == set(CHART_IDS)
    assert all(svg.child("title") is not None for svg in charts.values())


@pytest.mark.slow
def test_headless_chromium_renders_the_charts_offline(page: Path, tmp_path: Path) -> None:
    tree = parse(dom(page, tmp_path))
    charts = {svg.attrs.get("id"): svg for svg in tree.find_all("svg")}
    assert set(CHART_IDS) <= set(charts)
    title = {name: (svg.child("title") or svg).text for name, svg in charts.items()}
    assert title["chart-funnel"] == "Checkout funnel: sessions reaching each step"
    assert title["chart-reasons"] == "Abandonment by likely reason"
    assert title["chart-recovery"].startswith("Recovery over time")
    assert title["chart-uplift"] == "Uplift against the holdout, with intervals"
    # One bar per funnel step, with its figure; one interval per uplift comparison; one column per day.
    bars = [g for g in charts["chart-funnel"].find_all("g") if g.attrs.get("class") == "bar"]
    assert [g.attrs["data-label"] for g in bars] == [
        "view_item", "add_to_cart", "begin_checkout", "add_shipping_info", "add_payment_info", "purchase",
    ]  # fmt: skip
    assert [(g.child("title") or g).text for g in bars[:2]] == [
        "view_item: 6", "add_to_cart: 4 (66.7% of previous)"
    ]
    assert {g.child("rect").attrs["fill"] for g in bars} == {BAR}  # type: ignore[union-attr]  # none flagged
    intervals = [g for g in charts["chart-uplift"].find_all("g") if g.attrs.get("class") == "interval"]
    assert [g.attrs["data-label"] for g in intervals] == ["all flows (global)"]
    days = [g for g in charts["chart-recovery"].find_all("g") if g.attrs.get("class") == "day"]
    assert [g.attrs["data-day"] for g in days] == ["2026-01-01", "2026-01-02"]
    # Chromium parsed the hostile names as text: no element came out of them.
    assert not tree.find_all("script") and not tree.find_all("img")


@pytest.mark.slow
def test_headless_chromium_paints_the_charts(page: Path, tmp_path: Path) -> None:
    # The funnel chart comes first after the revenue table: a window of this size shows its bars.
    colours = screenshot_pixels(page, tmp_path, 1000, 1200)
    assert hex_colour(BAR) in colours
    assert len(colours) > 20  # text, rules and bars, not a blank page


def test_a_bottleneck_is_drawn_in_red_and_named_in_its_tooltip(tmp_path: Path) -> None:
    found = report(tmp_path)
    assert found.funnel is not None
    from recoverkit.analytics import funnel, load_events

    events = tmp_path / "events.jsonl"
    flagged = funnel(load_events(events), min_entrants=1)
    tree = parse(render_html(msgspec.structs.replace(found, funnel=flagged)))
    (chart,) = [svg for svg in tree.find_all("svg") if svg.attrs["id"] == "chart-funnel"]
    fills = {g.attrs["data-label"]: g.child("rect").attrs["fill"] for g in chart.find_all("g")}  # type: ignore[union-attr]
    assert fills["add_payment_info"] == FLAG and list(fills.values()).count(FLAG) == 1
