"""The public datasets as the score stage sees them: one cart's :class:`Features` and whether it was bought.

The default score (``score.DefaultScorer``) is checked on three public datasets (provenance and licences in
``../shared/data/README.md``) by ``benchmarks/eval_score.py`` and by the tests. Each function here reads one
of them and maps every cart to the features the engine would have computed, as far as the data allows; what
the data lacks gets a constant, so it cannot move the ranking either way:

* :func:`uci_carts`: the 12,330 UCI online shoppers sessions, each taken as a cart at the cart step (UCI has
  no cart field), labelled ``Revenue``. Product pages are ``item_views``, all pages ``views``, the three page
  durations summed ``session_seconds``. ``PageValues`` has no engine counterpart and is left out. Neither is
  ``VisitorType``: UCI's returning visitor has *visited* before, while the engine's ``returning`` customer has
  *bought* before. No prices (``value`` 0).
* :func:`retailrocket_carts`: the Retailrocket sessions of ``prefix_dataset.parquet`` at their first
  add-to-cart (``cutoff_k`` 0), labelled ``y`` (the session later bought: in-session purchase intent, not a
  recovery after abandonment). Needs ``pyarrow``. No prices.
* :func:`rees46_carts`: the sessions of the REES46 slice that add to cart, at their first add-to-cart (the
  views and time before it, the carted product's price as ``value``), labelled by a purchase later in the
  same session. Every such purchase came within 12 minutes (median 94 s): this label too is in-session
  purchase intent.

None of this runs in the engine; it is here so that the benchmark and the tests read the data the same way.
"""

from __future__ import annotations

import csv
import importlib
import os
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from .events import CheckoutStep
from .items import Features

__all__ = ["LabelledCarts", "rees46_carts", "retailrocket_carts", "retailrocket_snapshot_features", "uci_carts"]

#: UCI's page counts and their durations.
_UCI_PAGES: Final = ("Administrative", "Informational", "ProductRelated")


class LabelledCarts(NamedTuple):
    """Carts of one dataset: their features and, in the same order, whether each was bought."""

    features: list[Features]
    converted: list[bool]


def _cart(**known: Any) -> Features:
    """Features of a cart at the cart step, with what a dataset knows filled in and the rest neutral."""
    fields: dict[str, Any] = {
        "value": 0.0, "lines": 1, "quantity": 1, "step": int(CheckoutStep.CART), "checkout_seconds": 0.0,
        "session_seconds": 0.0, "returning": False, "identified": False, "payment_failures": 0, "form_errors": 0,
        "exit_intent": False, "shipping_ratio": 0.0, "item_views": 0, "views": 0, "trigger": "inactivity",
    }  # fmt: skip
    fields.update(known)
    return Features(**fields)


def uci_carts(path: str | os.PathLike[str]) -> LabelledCarts:
    """UCI online shoppers sessions (``online_shoppers_intention.csv``) as carts; see the module docstring."""
    out = LabelledCarts([], [])
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out.features.append(
                _cart(
                    session_seconds=sum(float(row[f"{page}_Duration"]) for page in _UCI_PAGES),
                    item_views=int(row["ProductRelated"]),
                    views=sum(int(row[page]) for page in _UCI_PAGES),
                )
            )
            out.converted.append(row["Revenue"] == "TRUE")
    return out


def retailrocket_snapshot_features(snapshot: dict[str, Any]) -> Features:
    """What the engine would know of a Retailrocket snapshot's cart: no prices, at the cart step, identified."""
    carts = int(snapshot["addtocart_count"])
    views = int(snapshot["view_count"])
    return _cart(
        lines=carts, quantity=carts, identified=True, session_seconds=float(snapshot["seconds_since_first_event"]),
        item_views=views, views=views,
    )  # fmt: skip


def retailrocket_carts(path: str | os.PathLike[str]) -> LabelledCarts:
    """Retailrocket sessions at their first add-to-cart (``prefix_dataset.parquet``); needs ``pyarrow``."""
    try:
        # Through importlib: pyarrow is optional and has no type stubs, whether it is installed or not.
        pq = importlib.import_module("pyarrow.parquet")
    except ImportError as exc:
        raise ImportError(
            f"reading {os.fspath(path)} needs pyarrow, which recoverkit does not depend on: pip install pyarrow"
        ) from exc
    first = [s for s in pq.read_table(path).to_pylist() if s["cutoff_k"] == 0]
    return LabelledCarts([retailrocket_snapshot_features(s) for s in first], [bool(s["y"]) for s in first])


def _rees46_time(text: str) -> float:
    # "2019-10-01 00:00:00 UTC": always UTC in the export.
    return datetime.strptime(text[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


def rees46_carts(path: str | os.PathLike[str]) -> LabelledCarts:
    """The REES46 slice's sessions that add to cart, at their first add-to-cart; see the module docstring.

    Rows without a session (the slice's last row is cut off) are left out.
    """
    sessions: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("user_session"):
                sessions[row["user_session"]].append((_rees46_time(row["event_time"]), row["event_type"], row["price"]))
    out = LabelledCarts([], [])
    for events in sessions.values():
        events.sort(key=lambda e: e[0])  # stable: events of one second keep the file's order
        at = next((i for i, (_, kind, _) in enumerate(events) if kind == "cart"), None)
        if at is None:
            continue
        views = sum(1 for _, kind, _ in events[:at] if kind == "view")
        out.features.append(
            _cart(
                value=float(events[at][2]),
                identified=True,
                session_seconds=events[at][0] - events[0][0],
                item_views=views,
                views=views,
            )
        )
        out.converted.append(any(kind == "purchase" for _, kind, _ in events[at:]))
    return out
