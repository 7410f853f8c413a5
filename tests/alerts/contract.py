"""What every alert sink promises, as one test class each sink's test module subclasses (as channels do).

A subclass provides a ``sink`` fixture and :meth:`AlertSinkContract.delivered`, which reads back, from the far
side (a list, an HTTP server, an SMTP server), the explanation text of every alert that reached it. Shops
writing their own sink can subclass it the same way.
"""

from __future__ import annotations

from typing import Any

import pytest

from recoverkit.alerts import Alert, AlertDelivery, AlertSink

__all__ = ["AlertSinkContract", "make_alert"]


def make_alert(kind: str = "alert", text: str = "payment step: 100 % of attempts failed in the last 6 minutes, "
               "usually 6.9 %; provider_unavailable up", **overrides: Any) -> Alert:
    """A realistic alert: the payment provider down."""
    fields: dict[str, Any] = {
        "kind": kind, "incident": "payment@1767318995", "area": "payment", "check": "payment_failures",
        "subject": "payment step", "at": 1767319255.0, "since": 1767319255.0, "text": text, "window": 360.0,
        "observed": 1.0, "usual": 0.069, "count": 14, "total": 14, "p_value": 1e-16, "baseline": "recent",
    }
    fields.update(overrides)
    return Alert(**fields)


class AlertSinkContract:
    """The behaviour every :class:`~recoverkit.alerts.AlertSink` shares."""

    @pytest.fixture
    def sink(self) -> AlertSink:
        raise NotImplementedError  # subclasses provide the sink under test

    def delivered(self, sink: AlertSink) -> list[str]:
        """The explanation text of each alert that reached the far side, in order."""
        raise NotImplementedError

    def test_is_an_alert_sink(self, sink: AlertSink) -> None:
        assert isinstance(sink, AlertSink)

    def test_an_alert_sent_is_delivered_with_its_explanation(self, sink: AlertSink) -> None:
        sink.send(make_alert())
        assert self.delivered(sink) == [make_alert().text]

    def test_alerts_arrive_in_the_order_sent(self, sink: AlertSink) -> None:
        texts = [f"checkout form: field postal_code rejected {n} % of checkouts" for n in (40, 60, 80)]
        for text in texts:
            sink.send(make_alert(text=text))
        assert self.delivered(sink) == texts

    def test_reminders_and_resolutions_are_delivered_too(self, sink: AlertSink) -> None:
        sink.send(make_alert("reminder", text="still broken"))
        sink.send(make_alert("resolved", text="payment: back to usual"))
        assert self.delivered(sink) == ["still broken", "payment: back to usual"]

    def test_delivery_from_its_thread_reaches_the_sink(self, sink: AlertSink) -> None:
        delivery = AlertDelivery([sink])
        delivery.put(make_alert(text="from the delivery thread"))
        delivery.close()
        assert self.delivered(sink) == ["from the delivery thread"]
        assert delivery.statistics == {"delivered": 1, "failed": 0, "dropped": 0}
