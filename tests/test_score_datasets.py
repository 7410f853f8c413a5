"""The default score on public data: the floor issue 16 sets (auROC >= 0.55), and the docs' weights table.

The default's weights were not fitted to these datasets (docs/scoring.md says how they were chosen); these
tests hold it to the floor on each dataset present in ../shared/data, and skip, saying what is missing, where a
dataset or pyarrow (for Retailrocket's parquet file) is absent.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from recoverkit._dataset_features import LabelledCarts, rees46_carts, retailrocket_carts, uci_carts
from recoverkit.evaluation import roc_auc_interval
from recoverkit.score import _WEIGHTS, DefaultScorer
from shared_data import require_shared

FLOOR = 0.55
DOCS = Path(__file__).resolve().parents[1] / "docs" / "scoring.md"


def default_auroc(carts: LabelledCarts) -> float:
    scorer = DefaultScorer()
    auroc, _, _ = roc_auc_interval(carts.converted, [scorer.probability(f) for f in carts.features])
    return auroc


def test_uci_sessions_become_carts_with_their_label() -> None:
    carts = uci_carts(require_shared("uci-online-shoppers-intention/online_shoppers_intention.csv"))
    assert (len(carts.features), sum(carts.converted)) == (12_330, 1_908)
    first = carts.features[0]  # the file's first session: one product page, no time on it, a returning visitor
    assert (first.item_views, first.views, first.session_seconds, first.returning) == (1, 1, 0.0, False)


def test_the_default_reaches_the_floor_on_uci_mapped_to_engine_features() -> None:
    carts = uci_carts(require_shared("uci-online-shoppers-intention/online_shoppers_intention.csv"))
    assert default_auroc(carts) >= FLOOR


def test_the_default_reaches_the_floor_on_retailrocket_carts() -> None:
    path = require_shared("retailrocket-cart-sessions-derived/prefix_dataset.parquet")
    if importlib.util.find_spec("pyarrow") is None:
        pytest.skip("reading prefix_dataset.parquet needs pyarrow, which recoverkit does not depend on")
    carts = retailrocket_carts(path)
    assert (len(carts.features), sum(carts.converted)) == (43_745, 11_760)
    assert default_auroc(carts) >= FLOOR


REES46_HEADER = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n"


def rees46_file(tmp_path: Path, rows: list[tuple[str, str, str, str, str]]) -> Path:
    """A REES46-shaped CSV of ``(hh:mm:ss, event_type, price, user_id, user_session)`` rows on 2019-10-01."""
    path = tmp_path / "rees46.csv"
    lines = [f"2019-10-01 {at} UTC,{kind},1,2,,,{price},{user},{session}\n" for at, kind, price, user, session in rows]
    path.write_text(REES46_HEADER + "".join(lines), encoding="utf-8")
    return path


def test_rees46_carts_are_taken_when_they_open_with_what_came_before() -> None:
    carts = rees46_carts(require_shared("rees46-multicategory-2019oct-prefix/2019-Oct.csv"))
    # 126 carts open in the slice; the 40 opened in its last 10 minutes are censored.
    assert (len(carts.features), sum(carts.converted)) == (86, 47)
    assert sum(f.returning for f in carts.features) == 8
    assert all(f.item_views >= 1 and f.value > 0 for f in carts.features)


def test_a_rees46_cart_is_bought_only_within_the_window_after_it_opened(tmp_path: Path) -> None:
    path = rees46_file(
        tmp_path,
        [
            ("00:00:00", "view", "5.00", "1", "a"),
            ("00:01:00", "cart", "5.00", "1", "a"),  # bought 10 minutes later: inside the window
            ("00:11:00", "purchase", "5.00", "1", "a"),
            ("00:02:00", "cart", "7.50", "2", "b"),  # bought 10 minutes and 1 second later: too late
            ("00:12:01", "purchase", "7.50", "2", "b"),
            ("00:20:00", "view", "1.00", "3", "c"),  # the slice's last event
        ],
    )
    carts = rees46_carts(path)
    assert carts.converted == [True, False]
    assert [(f.value, f.item_views, f.session_seconds) for f in carts.features] == [(5.0, 1, 60.0), (7.5, 0, 0.0)]


def test_rees46_carts_opened_in_the_slices_last_window_are_censored(tmp_path: Path) -> None:
    path = rees46_file(
        tmp_path,
        [
            ("00:00:00", "cart", "5.00", "1", "a"),  # 10 minutes before the end: its outcome is known
            ("00:00:01", "cart", "5.00", "2", "b"),  # less than 10 minutes: not abandoned, only cut off
            ("00:10:00", "view", "1.00", "3", "c"),
            ("00:10:00", "view", "1.00", "4", ""),  # the slice's last row, cut off before its session
        ],
    )
    assert rees46_carts(path).converted == [False]
    assert rees46_carts(path, window=300.0).converted == [False, False]
    assert rees46_carts(path, window=900.0).converted == []
    with pytest.raises(ValueError, match="window=0"):
        rees46_carts(path, window=0)


def test_a_purchase_closes_a_rees46_cart_and_the_next_add_to_cart_opens_a_returning_one(tmp_path: Path) -> None:
    path = rees46_file(
        tmp_path,
        [
            ("00:00:00", "purchase", "3.00", "1", "earlier"),  # user 1 bought in another session
            ("00:01:00", "view", "5.00", "1", "a"),
            ("00:02:00", "cart", "5.00", "1", "a"),
            ("00:02:30", "cart", "6.00", "1", "a"),  # the same cart: not a new one
            ("00:03:00", "purchase", "11.00", "1", "a"),
            ("00:04:00", "view", "8.00", "1", "a"),
            ("00:05:00", "cart", "8.00", "1", "a"),  # a new cart; the session's views and start stay
            ("00:06:00", "cart", "2.00", "2", "b"),  # user 2 never bought before
            ("00:30:00", "view", "1.00", "3", "c"),
        ],
    )
    carts = rees46_carts(path)
    got = [(f.returning, f.item_views, f.session_seconds, f.value) for f in carts.features]
    assert got == [(True, 1, 60.0, 5.0), (True, 2, 240.0, 8.0), (False, 0, 0.0, 2.0)]
    assert carts.converted == [True, False, False]


def test_a_rees46_cart_is_bought_when_its_user_buys_in_another_session(tmp_path: Path) -> None:
    path = rees46_file(
        tmp_path,
        [
            ("00:00:00", "cart", "5.00", "1", "a"),
            ("00:05:00", "view", "5.00", "1", "b"),  # the same user comes back in a new session and buys
            ("00:06:00", "purchase", "5.00", "1", "b"),
            ("00:01:00", "cart", "4.00", "2", "c"),  # another user's purchase is not this cart's
            ("00:02:00", "purchase", "4.00", "3", "d"),
            ("00:20:00", "view", "1.00", "4", "e"),
        ],
    )
    assert rees46_carts(path).converted == [True, False]


@pytest.mark.xfail(
    strict=True,
    reason="below the floor (0.41, DeLong 95% 0.29-0.53, 86 carts): on the REES46 slice, carts opened after "
    "fewer views and less time are bought more often, the opposite of UCI and Retailrocket (docs/scoring.md)",
)
def test_the_default_reaches_the_floor_on_rees46_carts() -> None:
    carts = rees46_carts(require_shared("rees46-multicategory-2019oct-prefix/2019-Oct.csv"))
    assert default_auroc(carts) >= FLOOR


def _documented_weights() -> dict[str, float]:
    """The weights table of docs/scoring.md: `key` cells in the first column, numbers in the second."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## The default model", 1)[1].split("\n## ", 1)[0]
    table: dict[str, float] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        keys = re.findall(r"`([a-z_]+)`", cells[0]) if len(cells) >= 3 and cells[0].startswith("`") else []
        if keys:
            values = [float(v) for v in cells[1].split("/")]
            assert len(keys) == len(values), line
            table.update(zip(keys, values, strict=True))
    return table


def test_the_docs_weights_table_shows_the_codes_weights() -> None:
    assert _documented_weights() == _WEIGHTS
