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


def test_rees46_cart_sessions_are_taken_at_their_first_add_to_cart() -> None:
    carts = rees46_carts(require_shared("rees46-multicategory-2019oct-prefix/2019-Oct.csv"))
    assert (len(carts.features), sum(carts.converted)) == (118, 65)
    assert all(f.item_views >= 1 and f.value > 0 for f in carts.features)


@pytest.mark.xfail(
    strict=True,
    reason="below the floor (0.40, DeLong 95% 0.30-0.50, 118 carts): on the REES46 slice, carts added after "
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
