"""On-site offers in the report's details: what visitors did with them (shown, clicked, dismissed), by channel, in
the terminal and the HTML report."""

from __future__ import annotations

import io

from analytics.chromium import parse
from helpers import T0
from recoverkit._cli_output import Out
from recoverkit.analytics import build_report, print_report, render_html
from recoverkit.facts import Assignment, MessageOutcome
from recoverkit.store import MemoryStore

HOUR = 3600.0


def onsite_store() -> MemoryStore:
    """1,250 carts; each put on-site; 1,200 offers shown, 300 clicked, 150 dismissed; one email sent as well."""
    facts: list[object] = []
    for i in range(1250):
        cart = f"k{i}"
        facts.append(Assignment(cart_key=cart, flow="f", group="treatment", contact_key=f"c{i}", assigned_at=T0,
                                value=1000, currency="EUR"))  # fmt: skip
        marks = ["sent"] + (["shown"] if i < 1200 else []) + (["clicked"] if i < 300 else [])
        marks += ["dismissed"] if 300 <= i < 450 else []
        for n, mark in enumerate(marks):
            facts.append(MessageOutcome(key=f"{cart}/f/0", cart_key=cart, contact_key=f"c{i}", flow="f", step=0,
                                        outcome=mark, at=T0 + HOUR + n, channel="onsite"))  # fmt: skip
    facts.append(MessageOutcome(key="k0/f/1", cart_key="k0", contact_key="c0", flow="f", step=1, outcome="sent",
                                at=T0 + 2 * HOUR, channel="email"))  # fmt: skip
    store = MemoryStore()
    store.record_facts(facts)  # type: ignore[arg-type]
    return store


def test_on_site_counts_are_in_the_details_by_channel() -> None:
    report = build_report(store=onsite_store(), now=T0 + 9 * 86_400)
    assert report.recovery is not None
    (onsite,) = [r for r in report.recovery.rows if r.dimension == "channel" and r.on_site]
    assert onsite.channel == "onsite" and onsite.on_site == {"clicked": 300, "dismissed": 150, "shown": 1200}
    # Not ends of a step: the 1,250 offers put on-site are the sends.
    assert onsite.sent == 1250 and onsite.not_sent == {}
    tree = parse(render_html(report))
    (table,) = [t for t in tree.find_all("table") if t.attrs.get("id") == "on-site"]
    cells = [[td.text for td in tr.find_all("td")] for tr in table.find_all("tr")[1:]]
    assert cells == [["onsite", "1,200", "300", "150", "25.0%"]]
    text = io.StringIO()
    print_report(report, Out(text))
    (line,) = [x for x in text.getvalue().splitlines() if x.startswith("onsite ")]
    assert line.split() == ["onsite", "1,200", "300", "150", "25.0%"]
    assert "on-site offers by channel" in text.getvalue()


def test_no_on_site_table_without_on_site_offers() -> None:
    store = MemoryStore()
    store.record_facts([MessageOutcome(key="a/f/0", cart_key="a", contact_key="c", flow="f", step=0, outcome="sent",
                                       at=T0, channel="email")])  # fmt: skip
    report = build_report(store=store, now=T0)
    assert 'id="on-site"' not in render_html(report)
    text = io.StringIO()
    print_report(report, Out(text))
    assert "on-site offers" not in text.getvalue()
