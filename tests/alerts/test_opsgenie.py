"""The Opsgenie receiver against a local server speaking the Alert API v2, through aiohttp:
create with the alert key as alias, close by alias, the same retry rules as every receiver,
and keys that never leave the Authorization header."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from pydantic import SecretStr, ValidationError

from alerts import AlertEngine, Notification, Signal
from alerts.receivers import RECEIVERS
from alerts.receivers.opsgenie import EU_API_URL, OpsgenieConfig, OpsgenieSink, create_body
from alerts.receivers.opsgenie.render import ALIAS_MAX, MESSAGE_MAX
from alerts.retry import deliver_with_retry
from tests.alerts.policies import no_hold
from tests.alerts.test_sinks import Sleeps
from tests.fakes.opsgenie_server import FakeOpsgenieServer, validate_create

KEY = "genie-0123-SeCrEt-key"


def incident(series: str = "team=ads") -> list[Notification]:
    """A critical (paged) trigger, a worsened update, the resolve."""
    engine = AlertEngine(no_hold(), dashboard_url="https://dash.example/dashboard")
    out: list[Notification] = []
    for i, usd in enumerate([90.0, 180.0, 3.0, 3.0, 3.0]):
        out.extend(engine.observe(Signal(
            series=series, labels={"team": "ads"}, window_start=60.0 * i, window_end=60.0 * (i + 1),
            observed_usd=usd, expected_usd=3.0, upper_usd=6.0, score=0.9, is_anomaly=usd > 6,
            top_contributors=[{"kind": "user", "name": "alice", "usd": usd / 2}], detector="seasonal")))
    assert [n.action for n in out] == ["trigger", "update", "resolve"] and all(n.page for n in out)
    return out


@pytest.fixture
async def og() -> AsyncIterator[FakeOpsgenieServer]:
    async with FakeOpsgenieServer(api_keys={KEY}) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_an_incident_is_one_alert_created_then_closed_by_its_alias(
        og: FakeOpsgenieServer, session: aiohttp.ClientSession) -> None:
    sink = OpsgenieSink(session, og.url + "/", SecretStr(KEY))  # a trailing slash is fine
    for n in incident():
        r = await sink.send(n, None)
        assert r.ok, r.detail
        assert r.state["alias"] == "cost_spike:team=ads" and r.state["request_id"]
    assert [(e["action"], e["alias"]) for e in og.events()] == [
        ("create", "cost_spike:team=ads"), ("create", "cost_spike:team=ads"), ("close", "cost_spike:team=ads")]
    alert = og.alerts["cost_spike:team=ads"]
    # the update was folded into the open alert (Opsgenie deduplicates by alias), then closed
    assert (alert["status"], alert["count"], alert["opened"], alert["priority"]) == ("closed", 2, 1, "P1")
    assert all(r["path"].endswith("/close?identifierType=alias") for r in og.requests if r["action"] == "close")
    first = og.events()[0]["body"]
    assert first["message"].startswith("Cost spike: team=ads") and first["source"] == "tokenpulse"
    assert "Observed $90.00 per window vs expected $3.00" in first["description"]
    assert "?series=team%3Dads" in first["description"] and first["details"]["dashboard"].endswith("?series=team%3Dads")
    assert first["details"]["observed_usd"] == "90.0" and first["details"]["label.team"] == "ads"
    assert "Back to normal after" in og.events()[2]["body"]["note"]


async def test_what_does_not_page_is_not_sent(og: FakeOpsgenieServer, session: aiohttp.ClientSession) -> None:
    n = Notification.from_dict({**incident()[0].to_dict(), "page": False, "severity": "warning"})
    r = await OpsgenieSink(session, og.url, KEY).send(n, None)
    assert r.ok and r.detail == "not paged" and og.requests == []


async def test_429_honours_retry_after_and_5xx_is_retried(og: FakeOpsgenieServer, session: aiohttp.ClientSession) -> None:
    og.rate_limit_next(retry_after=3)
    og.fail_next(503)
    sleeps = Sleeps()
    r = await deliver_with_retry(OpsgenieSink(session, og.url, KEY), incident()[0], None, sleep=sleeps, rand=lambda: 0.0)
    assert r.ok, r.detail
    assert sleeps.delays == [3.0, 0.0] and [x["status"] for x in og.requests] == [429, 503, 202]


@pytest.mark.parametrize("key, status, words", [
    ("genie-wrong-SeCrEt", 401, "Could not authenticate"),
])
async def test_a_wrong_key_is_permanent_and_never_shown(
        og: FakeOpsgenieServer, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture,
        key: str, status: int, words: str) -> None:
    caplog.set_level(logging.DEBUG)
    sleeps = Sleeps()
    r = await deliver_with_retry(OpsgenieSink(session, og.url, key), incident()[0], None, sleep=sleeps)
    assert not r.ok and not r.retryable and f"HTTP {status}" in r.detail and words in r.detail
    assert sleeps.delays == [] and len(og.requests) == 1
    logged = " ".join(rec.getMessage() for rec in caplog.records)
    assert key not in r.detail + logged and KEY not in logged


async def test_a_422_names_opsgenies_reasons_and_is_not_retried(og: FakeOpsgenieServer, session: aiohttp.ClientSession) -> None:
    og.fail_next(422, {"message": "Request body is not processable. Please check the errors.",
                       "errors": {"message": "Message can not be empty."}})
    r = await deliver_with_retry(OpsgenieSink(session, og.url, KEY), incident()[0], None, sleep=Sleeps())
    assert not r.ok and not r.retryable and "message: Message can not be empty." in r.detail


async def test_an_echoed_key_is_redacted(og: FakeOpsgenieServer, session: aiohttp.ClientSession) -> None:
    og.fail_next(500, {"message": f"internal error for key {KEY}"})
    r = await OpsgenieSink(session, og.url, KEY).send(incident()[0], None)
    assert not r.ok and r.retryable and KEY not in r.detail and "[redacted]" in r.detail


async def test_unreachable_is_retryable(session: aiohttp.ClientSession) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = await OpsgenieSink(session, f"http://127.0.0.1:{port}", KEY).send(incident()[0], None)
    assert not r.ok and r.retryable


async def test_absurd_alerts_fit_opsgenies_limits_and_close_by_the_same_alias(
        og: FakeOpsgenieServer, session: aiohttp.ClientSession) -> None:
    team = "ä|=/?#&" * 200
    notes = [Notification.from_dict({**n.to_dict(), "key": f"cost_spike:team={team}", "series": f"team={team}",
                                     "labels": {"team": team}, "title": f"Cost spike: team={team}"})
             for n in incident()]
    body = create_body(notes[0])
    assert validate_create(body) == {}
    assert len(body["message"]) <= MESSAGE_MAX and len(body["alias"]) <= ALIAS_MAX
    sink = OpsgenieSink(session, og.url, KEY)
    for n in notes:
        assert (await sink.send(n, None)).ok
    [alert] = og.alerts.values()
    assert alert["status"] == "closed" and alert["opened"] == 1


def test_the_config_names_keys_and_their_region() -> None:
    cfg = OpsgenieConfig(api_key=SecretStr("k0"), api_keys={"ads": SecretStr("k1")}, api_url=EU_API_URL)
    assert cfg.targets() == {"default", "ads"} and cfg.default_targets() == ("default",)
    assert cfg.key_for("ads") == SecretStr("k1") and cfg.target_error("ads") is None
    assert "TOKENPULSE_OPSGENIE_API_KEYS" in (cfg.target_error("ml") or "")
    assert sorted(cfg.secrets()) == ["k0", "k1"] and "k1" not in repr(cfg)
    assert OpsgenieConfig(api_keys={"ads": SecretStr("k1")}).default_targets() == ()
    assert not OpsgenieConfig().configured() and cfg.configured()
    with pytest.raises(ValidationError, match="http"):
        OpsgenieConfig(api_key=SecretStr("k0"), api_url="api.opsgenie.com")
    with pytest.raises(ValidationError, match="set it once"):
        OpsgenieConfig(api_key=SecretStr("k0"), api_keys={"default": SecretStr("k1")})
    assert RECEIVERS["opsgenie"].pages_only and RECEIVERS["opsgenie"].config is OpsgenieConfig
