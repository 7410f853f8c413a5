"""The alert sinks: the test double, the webhook against a real local HTTP server, e-mail against a real local
SMTP server (aiosmtpd), each passing the shared contract; and delivery's retries and containment."""

from __future__ import annotations

import email
import email.policy
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from recoverkit.alerts import (
    AlertDelivery,
    AlertsConfig,
    EmailAlertSink,
    MemoryAlertSink,
    WebhookAlertSink,
    sinks_from_config,
)
from recoverkit.errors import ConfigError

from channels.http_server import Reply, Server, serving
from channels.test_smtp import Recorder, free_port
from .contract import AlertSinkContract, make_alert

TOKEN = "T0KEN-s3cret-9f8e7d"


class TestMemoryAlertSink(AlertSinkContract):
    @pytest.fixture
    def sink(self) -> MemoryAlertSink:
        return MemoryAlertSink()

    def delivered(self, sink: Any) -> list[str]:
        return [alert.text for alert in sink.alerts]


@pytest.fixture
def http() -> Iterator[Server]:
    with serving(Reply(200, b"ok")) as server:
        yield server


class TestWebhookAlertSink(AlertSinkContract):
    @pytest.fixture
    def sink(self, http: Server) -> WebhookAlertSink:
        self.server = http
        return WebhookAlertSink(f"{http.base_url}/services/{TOKEN}", timeout=5)

    def delivered(self, sink: Any) -> list[str]:
        return [json.loads(r.body)["text"].split("\n", 1)[1] for r in self.server.requests]


def test_webhook_posts_json_that_slack_reads_as_text(http: Server) -> None:
    WebhookAlertSink(f"{http.base_url}/services/{TOKEN}").send(make_alert())
    (request,) = http.requests
    body = json.loads(request.body)
    assert request.method == "POST" and request.path == f"/services/{TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert body["text"].startswith("Purchase path alert (payment, 2026-01-02 02:00 UTC)\npayment step: 100 %")
    assert body["recoverkit_alert"]["incident"] == "payment@1767318995"
    assert body["recoverkit_alert"]["count"] == 14


def test_webhook_without_fields_sends_only_the_text(http: Server) -> None:
    WebhookAlertSink(http.base_url, fields=False).send(make_alert())
    assert set(json.loads(http.requests[0].body)) == {"text"}


@pytest.mark.parametrize("status", [400, 404, 500, 503])
def test_webhook_refusal_raises_naming_host_and_status_never_the_token(http: Server, status: int) -> None:
    http.replies.append(Reply(status))
    with pytest.raises(RuntimeError) as raised:
        WebhookAlertSink(f"{http.base_url}/services/{TOKEN}").send(make_alert())
    assert f"answered {status}" in str(raised.value) and "127.0.0.1" in str(raised.value)
    assert TOKEN not in str(raised.value)


def test_webhook_unreachable_raises_without_the_url() -> None:
    port = free_port()
    with pytest.raises(RuntimeError, match="unreachable") as raised:
        WebhookAlertSink(f"http://127.0.0.1:{port}/hooks/{TOKEN}", timeout=2).send(make_alert())
    assert TOKEN not in str(raised.value)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "not a url", f"https:///{TOKEN}"])
def test_webhook_url_is_checked_at_construction_without_echoing_it(url: str) -> None:
    with pytest.raises(ConfigError, match="expected an absolute http") as raised:
        WebhookAlertSink(url)
    assert TOKEN not in str(raised.value)


@pytest.fixture
def smtp() -> Iterator[tuple[Recorder, int]]:
    handler = Recorder()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, server_hostname="localhost",
                            authenticator=handler.authenticate, auth_require_tls=False)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def _mail(data: bytes) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


class TestEmailAlertSink(AlertSinkContract):
    @pytest.fixture
    def sink(self, smtp: tuple[Recorder, int]) -> EmailAlertSink:
        self.recorder = smtp[0]
        return EmailAlertSink(to=["team@shop.example"], sender="alerts@shop.example", host="127.0.0.1",
                              port=smtp[1], timeout=5)

    def delivered(self, sink: Any) -> list[str]:
        return [_mail(m.data).get_content().replace("\r\n", "\n").split("\n\n", 1)[0] for m in self.recorder.messages]


def test_email_has_the_title_as_subject_and_goes_to_the_team(smtp: tuple[Recorder, int]) -> None:
    recorder, port = smtp
    EmailAlertSink(to=["team@shop.example", "owner@shop.example"], sender="alerts@shop.example",
                   host="127.0.0.1", port=port).send(make_alert())
    (received,) = recorder.messages
    mail = _mail(received.data)
    assert received.rcpt_tos == ["team@shop.example", "owner@shop.example"]
    assert mail["Subject"] == "Purchase path alert (payment, 2026-01-02 02:00 UTC)"
    assert "14 of 14 in the last 6 minutes" in mail.get_content()


def test_email_logs_in_with_the_credentials_given(smtp: tuple[Recorder, int]) -> None:
    recorder, port = smtp
    EmailAlertSink(to=["team@shop.example"], sender="alerts@shop.example", host="127.0.0.1", port=port,
                   username="alerts", password="right").send(make_alert())
    assert recorder.logins == [(b"alerts", b"right")] and len(recorder.messages) == 1


def test_email_refused_raises_with_the_code_never_the_password(smtp: tuple[Recorder, int]) -> None:
    recorder, port = smtp
    sink = EmailAlertSink(to=["team@shop.example"], sender="alerts@shop.example", host="127.0.0.1", port=port,
                          username="alerts", password="wrong-" + TOKEN)
    with pytest.raises(RuntimeError, match="answered 535") as raised:
        sink.send(make_alert())
    assert TOKEN not in str(raised.value) and recorder.messages == []


def test_email_settings_are_checked_at_construction() -> None:
    with pytest.raises(ConfigError, match="`to`"):
        EmailAlertSink(to=[], sender="alerts@shop.example")
    with pytest.raises(ConfigError, match="both or neither"):
        EmailAlertSink(to=["a@shop.example"], sender="alerts@shop.example", username="u")


class _Flaky:
    def __init__(self, failures: int) -> None:
        self.failures, self.alerts = failures, MemoryAlertSink()

    def send(self, alert: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError(f"provider said no, token={TOKEN}")
        self.alerts.send(alert)


def test_delivery_retries_a_failing_sink_then_gives_up_logging_without_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sleeps: list[float] = []
    recovering, broken, healthy = _Flaky(2), _Flaky(99), MemoryAlertSink()
    delivery = AlertDelivery([recovering, broken, healthy], thread=False, sleep=sleeps.append)
    with caplog.at_level(logging.WARNING, logger="recoverkit.alerts"):
        delivery.put(make_alert())
    assert len(recovering.alerts.alerts) == 1 and len(healthy.alerts) == 1 and broken.alerts.alerts == []
    assert sleeps == [1.0, 5.0, 1.0, 5.0]
    assert delivery.statistics == {"delivered": 2, "failed": 1, "dropped": 0}
    assert len([r for r in caplog.records if r.getMessage().startswith("alert_sink_failed")]) == 5
    assert TOKEN not in caplog.text


def test_delivery_refuses_an_object_without_send() -> None:
    with pytest.raises(ConfigError, match="send\\(alert\\)"):
        AlertDelivery([object()])  # type: ignore[list-item]


def test_sinks_from_config_reads_secrets_from_the_environment(http: Server) -> None:
    config = AlertsConfig(webhook_url_env="SHOP_ALERT_HOOK", email_to=["team@shop.example"],
                          email_from="alerts@shop.example", smtp_user_env="SMTP_USER", smtp_password_env="SMTP_PASS")
    sinks = sinks_from_config(config, {"SHOP_ALERT_HOOK": f"{http.base_url}/{TOKEN}", "SMTP_USER": "u",
                                       "SMTP_PASS": "p"})
    assert [type(s).__name__ for s in sinks] == ["WebhookAlertSink", "EmailAlertSink"]
    assert sinks_from_config(AlertsConfig(), {}) == []
    with pytest.raises(ConfigError, match="'SHOP_ALERT_HOOK'") as raised:
        sinks_from_config(config, {"SMTP_USER": "u", "SMTP_PASS": "p"})
    assert TOKEN not in str(raised.value)
