"""PagerDuty's webhooks v3 (issue 14, item 4): a page acknowledged or resolved in PagerDuty
acknowledges or resolves the tokenpulse alert. Only a request signed with the subscription's
secret (``X-PagerDuty-Signature: v1=<hex HMAC-SHA256 of the body>``, one of several during a
rotation) of a bounded size is acted on; the answer is a feedback event keyed by the alert that
the incident's key names, applied once by the feedback worker like a Slack press; a resolve
resolves the alert without touching the detector."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from alerts.receivers.pagerduty.config import PagerDutyConfig
from alerts.receivers.pagerduty.render import pd_dedup_key
from streams.common.config import StreamConfig
from streams.common.metrics import Metrics
from streams.worker.app import create_app
from streams.worker.pagerduty_webhook import (
    BODY_MAX,
    PATH,
    PageAnswer,
    PagerDutyVerifier,
    page_event,
    parse_webhook,
    register_pagerduty_webhook,
)
from tests.streams.worker.test_feedback import KEY, event, firing
from tests.streams.worker.test_judging import Q, sent

SECRET = "pd-webhook-secret-made-up-for-tests"
ALERT_KEY = "cost_spike:team=ads"


def webhook(kind: str = "incident.acknowledged", *, key: str | None = ALERT_KEY, event_id: str = "01DEN8H0XQ2YV2K3") -> bytes:
    data: dict[str, Any] = {"id": "Q0RIJJZL24RC6W", "type": "incident", "html_url": "https://acme.pagerduty.com/incidents/Q0RIJJZL24RC6W",
                            "status": kind.rpartition(".")[2], "title": "[critical] Cost spike: team=ads"}
    if key is not None:
        data["incident_key"] = key
    return orjson.dumps({"event": {"id": event_id, "event_type": kind, "resource_type": "incident",
                                   "occurred_at": "2026-01-31T12:00:00.000Z",
                                   "agent": {"id": "P0ANA01", "summary": "Ana Lee", "type": "user_reference"},
                                   "data": data}})


def test_the_signature_is_checked_in_every_form_pagerduty_sends() -> None:
    v = PagerDutyVerifier(SECRET)
    body = webhook()
    good = v.signature(body)
    assert good.startswith("v1=") and v.check(good, body) is None
    other = PagerDutyVerifier("the-old-secret").signature(body)
    assert v.check(f"{other},{good}", body) is None  # during a rotation: one of two
    assert v.check(other, body) == "forged"
    assert v.check(good, body + b" ") == "forged"
    assert v.check(None, body) == "missing" and v.check("", body) == "missing"
    assert v.check("v0=" + good[3:], body) == "malformed" and v.check("v1=abc", body) == "malformed"
    assert SECRET not in repr(v)
    with pytest.raises(ValueError, match="empty"):
        PagerDutyVerifier("")


def test_only_acknowledged_and_resolved_incidents_with_a_key_are_answers() -> None:
    a = parse_webhook(webhook())
    assert a == PageAnswer(id="pagerduty:01DEN8H0XQ2YV2K3", action="tokenpulse_ack", incident_key=ALERT_KEY,
                           user="Ana Lee", user_id="P0ANA01", at=1_769_860_800.0,
                           url="https://acme.pagerduty.com/incidents/Q0RIJJZL24RC6W")
    assert parse_webhook(webhook("incident.resolved")).action == "tokenpulse_resolve"  # type: ignore[union-attr]
    assert parse_webhook(webhook("incident.triggered")) is None
    assert parse_webhook(webhook(key=None)) is None  # not one tokenpulse opened
    for bad, field in ((b"{", "body"), (b"{}", "event"), (orjson.dumps({"event": {"event_type": "incident.resolved"}}),
                                                          "event.data")):
        with pytest.raises(ValueError, match=field):
            parse_webhook(bad)


def test_the_incident_key_finds_the_alert_and_its_slack_message() -> None:
    long_key = "cost_spike:team=" + "x" * 300
    alerts = [(ALERT_KEY, {"key": ALERT_KEY, "series": "team=ads", "started_at": 100.0, "window_end": 160.0}),
              (long_key, {"key": long_key, "series": "team=" + "x" * 300, "started_at": 5.0})]
    deliveries = {ALERT_KEY: {"pagerduty:default": {"ok": True, "state": {"dedup_key": ALERT_KEY}},
                              "slack:#ads": {"ok": True, "state": {"channel": "C0ADS", "ts": "100.0001"}}}}
    ev = page_event(parse_webhook(webhook()), alerts, deliveries)  # type: ignore[arg-type]
    assert ev is not None and (ev["key"], ev["series"], ev["started_at"], ev["channel"], ev["message_ts"]) == (
        ALERT_KEY, "team=ads", 100.0, "C0ADS", "100.0001")
    assert (ev["source"], ev["user"], ev["id"]) == ("pagerduty", "Ana Lee", "pagerduty:01DEN8H0XQ2YV2K3")
    # a key longer than PagerDuty's 255 characters was sent shortened: found all the same
    ev = page_event(parse_webhook(webhook(key=pd_dedup_key(long_key))), alerts, deliveries)  # type: ignore[arg-type]
    assert ev is not None and ev["key"] == long_key and ev["channel"] is None
    assert page_event(parse_webhook(webhook(key="someone-elses-incident")), alerts, deliveries) is None  # type: ignore[arg-type]


@pytest.fixture
async def route() -> AsyncIterator[tuple[TestClient, list[PageAnswer], Metrics]]:
    got: list[PageAnswer] = []
    metrics = Metrics()
    app = web.Application()

    def on_answer(a: PageAnswer) -> bool:
        got.append(a)
        return a.incident_key == ALERT_KEY

    register_pagerduty_webhook(app, PagerDutyVerifier(SECRET), on_answer, metrics)
    async with TestClient(TestServer(app)) as client:
        yield client, got, metrics


async def _post(client: TestClient, body: bytes, signature: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-PagerDuty-Signature"] = signature
    resp = await client.post(PATH, data=body, headers=headers)
    return resp.status


async def test_the_endpoint_acts_on_signed_answers_only(route: tuple[TestClient, list[PageAnswer], Metrics]) -> None:
    client, got, metrics = route
    v = PagerDutyVerifier(SECRET)
    body = webhook()
    assert await _post(client, body, v.signature(body)) == 200
    assert [a.action for a in got] == ["tokenpulse_ack"]
    forged = PagerDutyVerifier("not-the-secret").signature(body)
    assert await _post(client, body, forged) == 401
    assert await _post(client, body, None) == 401
    huge = b'{"event": {"x": "' + b"a" * (2 * 1024 * 1024) + b'"}}'  # 2 MB: refused before any HMAC
    assert await _post(client, huge, v.signature(huge)) == 413
    assert await _post(client, b"not json", v.signature(b"not json")) == 400
    other = webhook("incident.triggered")
    assert await _post(client, other, v.signature(other)) == 200
    unknown = webhook(key="someone-elses-incident")
    assert await _post(client, unknown, v.signature(unknown)) == 200
    assert len(got) == 2  # the ack, and the unknown key (which on_answer said it does not hold)
    rejected = metrics.counters["pagerduty_webhooks_rejected_total"]
    assert (rejected['{reason="forged"}'], rejected['{reason="missing"}'], rejected['{reason="too_large"}'],
            rejected['{reason="invalid"}']) == (1, 1, 1, 1)
    total = metrics.counters["pagerduty_webhooks_total"]
    assert (total['{outcome="accepted"}'], total['{outcome="ignored"}'], total['{outcome="unknown_alert"}']) == (1, 1, 1)
    assert len(huge) > BODY_MAX


async def test_a_resolve_in_pagerduty_resolves_the_alert_once_and_leaves_the_detector() -> None:
    j, outbox, fb, _ = await firing()
    judge = j.judges[Q]
    rebased: list[str] = []
    det = judge.detectors["org"]
    real = det.rebase
    det.rebase = lambda: (rebased.append("org"), real())[1]  # type: ignore[method-assign]
    ev = event("tokenpulse_resolve", id="pagerduty:01DEN8H0XQ2YV2K3", user="Ana Lee", user_id="P0ANA01",
               source="pagerduty", channel=None, message_ts=None)
    rec = await fb.apply(Q, ev)
    assert rec is not None and rec["outcome"] == "resolved" and rebased == []
    assert not judge.engine.tracks(KEY)
    resolve = sent(outbox)[-1]
    assert (resolve["key"], resolve["action"]) == (KEY, "resolve")
    assert resolve["explanation"] == "Ana Lee resolved the page in PagerDuty"
    n = len(outbox.sent)
    assert await fb.apply(Q, ev) is None and len(outbox.sent) == n  # PagerDuty's retry: applied once


@pytest.mark.parametrize("secret", [SECRET, None])
async def test_the_route_exists_only_with_the_secret_and_needs_no_api_token(tmp_path: Path, secret: str | None) -> None:
    pd = PagerDutyConfig(routing_key=SecretStr("R0made-up"), webhook_secret=None if secret is None else SecretStr(secret))
    cfg = StreamConfig(bootstrap="127.0.0.1:1", usage_partitions=1, data_dir=str(tmp_path),
                       receivers={"pagerduty": pd}, api_token="an-api-token-for-this-test-0123456789")
    app = create_app(cfg)
    async with TestClient(TestServer(app.web.web_app)) as client:
        body = webhook(key="nothing-here")
        resp = await client.post(PATH, data=body, headers={"X-PagerDuty-Signature": PagerDutyVerifier(SECRET).signature(body)})
        assert resp.status == (200 if secret else 404)
        resp = await client.post(PATH, data=body, headers={"X-PagerDuty-Signature": "v1=" + "0" * 64})
        assert resp.status == (401 if secret else 404)
        assert "secret" not in await resp.text()
