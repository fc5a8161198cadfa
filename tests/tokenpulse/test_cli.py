from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenpulse.cli import app

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("clean_env")


def test_help_lists_every_command():
    out = runner.invoke(app, ["--help"]).output
    for cmd in ("dev", "worker", "simulate", "normalize", "policy", "broker", "replay"):
        assert cmd in out


def test_normalize_maps_shapes_and_reports_rejects():
    lines = [
        {"event_id": "1", "ts": 1767225600, "team": "ads", "user": "a", "provider": "openai", "model": "gpt-4o",
         "input_tokens": 1000, "output_tokens": 100, "cache_read_tokens": 400},
        {"event_id": "2", "ts": "2026-01-01T00:00:00Z", "team": "ads", "model": "claude-sonnet-4-20250514",
         "provider": "anthropic",
         "usage": {"input_tokens": 100, "output_tokens": 50, "cache_read_input_tokens": 900,
                   "cache_creation_input_tokens": 0}},
        {"event_id": "3", "ts": 1767225600, "model": "gpt-4o", "input_tokens": 5, "output_tokens": 1},
    ]
    stdin = "\n".join(json.dumps(x) for x in lines) + "\nnot json\n"
    res = runner.invoke(app, ["normalize"], input=stdin)
    assert res.exit_code == 0, res.output
    out = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert [e["event_id"] for e in out] == ["1", "2"]
    assert out[1]["input_tokens"] == 1000 and out[1]["cache_read_tokens"] == 900  # Anthropic: cache is extra
    assert out[0]["cost_usd"] > 0
    assert "2 accepted, 2 rejected" in res.stderr
    assert "team" in res.stderr and "invalid JSON" in res.stderr


def test_policy_command_names_the_line_at_fault(tmp_path: Path):
    p = tmp_path / "policy.yaml"
    p.write_text("watch: [team]\nalerts:\n  min_excess_usd: -1\n")
    res = runner.invoke(app, ["policy", str(p)])
    assert res.exit_code == 2
    assert f"{p}:3: alerts.min_excess_usd" in res.stderr


def test_bad_setting_stops_start_up_naming_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TOKENPULSE_WINDOW_SECONDS", "soon")
    res = runner.invoke(app, ["worker"])
    assert res.exit_code == 2
    assert "TOKENPULSE_WINDOW_SECONDS" in res.stderr


def test_worker_without_kafka_says_what_to_do():
    res = runner.invoke(app, ["worker"])
    assert res.exit_code == 2
    assert "TOKENPULSE_KAFKA_BOOTSTRAP is not set" in res.stderr and "tokenpulse dev" in res.stderr


def test_secrets_never_echoed_in_setting_errors(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TOKENPULSE_SLACK_TOKEN", "xoxb-super-secret")
    monkeypatch.setenv("TOKENPULSE_SLACK_API_URL", "ftp://nope")
    res = runner.invoke(app, ["worker"])
    assert res.exit_code == 2
    assert "TOKENPULSE_SLACK_API_URL" in res.stderr and "xoxb-super-secret" not in res.output + res.stderr


def test_simulate_rejects_a_bad_spike():
    res = runner.invoke(app, ["simulate", "--bootstrap", "127.0.0.1:1", "--spike", "team=nobody"])
    assert res.exit_code == 2 and "nobody" in res.stderr


def test_empty_secret_means_unset(monkeypatch: pytest.MonkeyPatch):
    from tokenpulse.settings import load_settings

    monkeypatch.setenv("TOKENPULSE_SLACK_TOKEN", "")
    assert "slack" not in load_settings().receivers()


def test_alerts_test_sends_through_real_clients_to_local_servers(monkeypatch: pytest.MonkeyPatch):
    from tests.fakes.pagerduty_server import FakePagerDutyServer
    from tests.fakes.slack_server import FakeSlackServer

    with FakeSlackServer(token="xoxb-cli-test") as slack, FakePagerDutyServer() as pd:
        monkeypatch.setenv("TOKENPULSE_SLACK_TOKEN", "xoxb-cli-test")
        monkeypatch.setenv("TOKENPULSE_SLACK_API_URL", f"{slack.url}/api/")
        monkeypatch.setenv("TOKENPULSE_PAGERDUTY_ROUTING_KEY", "rk-cli-test")
        monkeypatch.setenv("TOKENPULSE_PAGERDUTY_URL", pd.enqueue_url)
        res = runner.invoke(app, ["alerts", "test", "--to", "slack"])
        assert res.exit_code == 0, res.output
        assert "slack trigger: ok" in res.stdout and "slack resolve: ok" in res.stdout
        posts = slack.calls("chat.postMessage")
        assert posts[0]["body"]["channel"] == "#ai-spend" and posts[1]["body"].get("thread_ts")
        res = runner.invoke(app, ["alerts", "test", "--to", "pagerduty"])
        assert res.exit_code == 0, res.output
        assert [e["event_action"] for e in pd.events()] == ["trigger", "resolve"]
        assert "xoxb-cli-test" not in res.output and "rk-cli-test" not in res.output


def test_alerts_test_needs_the_sink_configured():
    res = runner.invoke(app, ["alerts", "test", "--to", "slack"])
    assert res.exit_code == 2 and "TOKENPULSE_SLACK_TOKEN is not set" in res.stderr


def test_alerts_test_sends_a_signed_webhook(monkeypatch: pytest.MonkeyPatch):
    from alerts.receivers.webhook import verify_signature
    from tests.fakes.webhook_server import FakeWebhookServer

    with FakeWebhookServer(secret="whsec-cli-test") as hook:
        monkeypatch.setenv("TOKENPULSE_WEBHOOK_URL", hook.hook_url)
        monkeypatch.setenv("TOKENPULSE_WEBHOOK_SECRET", "whsec-cli-test")
        res = runner.invoke(app, ["alerts", "test", "--to", "webhook"])
        assert res.exit_code == 0, res.output
        assert "webhook trigger: ok" in res.stdout and "webhook resolve: ok" in res.stdout
        assert [b["notification"]["action"] for b in hook.deliveries()] == ["trigger", "resolve"]
        req = hook.accepted()[0]
        assert verify_signature("whsec-cli-test", req["timestamp"], req["raw"], req["signature"])
        assert req["body"]["notification"]["title"] == "tokenpulse test notification"
        assert "whsec-cli-test" not in res.output


def test_alerts_test_webhook_exits_1_when_delivery_fails(monkeypatch: pytest.MonkeyPatch):
    from tests.fakes.webhook_server import FakeWebhookServer

    with FakeWebhookServer(secret="whsec-the-receivers-own") as hook:
        monkeypatch.setenv("TOKENPULSE_WEBHOOK_URL", hook.hook_url)
        monkeypatch.setenv("TOKENPULSE_WEBHOOK_SECRET", "whsec-cli-wrong")
        res = runner.invoke(app, ["alerts", "test", "--to", "webhook", "--no-resolve"])
        assert res.exit_code == 1, res.output
        assert "webhook trigger: FAILED webhook: HTTP 401: invalid signature" in res.stdout
        assert len(hook.requests) == 1  # a 401 is permanent: not retried
        assert "whsec-cli-wrong" not in res.output


def test_alerts_test_webhook_needs_the_url():
    res = runner.invoke(app, ["alerts", "test", "--to", "webhook"])
    assert res.exit_code == 2 and "TOKENPULSE_WEBHOOK_URL is not set" in res.stderr


def test_alerts_test_rejects_an_unknown_sink():
    from alerts.receivers import RECEIVERS

    res = runner.invoke(app, ["alerts", "test", "--to", "email"])
    assert res.exit_code == 2 and all(name in res.stderr for name in RECEIVERS)


def test_webhook_url_without_a_secret_stops_start_up(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TOKENPULSE_WEBHOOK_URL", "https://hooks.example/tokenpulse")
    res = runner.invoke(app, ["worker"])
    assert res.exit_code == 2
    assert "TOKENPULSE_WEBHOOK_SECRET" in res.stderr and "TOKENPULSE_WEBHOOK_URL is set" in res.stderr


def test_webhook_secret_never_echoed_in_setting_errors(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TOKENPULSE_WEBHOOK_URL", "hooks.example/no-scheme")
    monkeypatch.setenv("TOKENPULSE_WEBHOOK_SECRET", "whsec-super-secret")
    res = runner.invoke(app, ["worker"])
    assert res.exit_code == 2
    assert "TOKENPULSE_WEBHOOK_URL" in res.stderr and "whsec-super-secret" not in res.output + res.stderr


def test_stream_config_carries_the_webhook_without_showing_the_secret(monkeypatch: pytest.MonkeyPatch):
    from tokenpulse.policy import load_policy
    from tokenpulse.runtime import stream_config
    from tokenpulse.settings import load_settings

    monkeypatch.setenv("TOKENPULSE_WEBHOOK_URL", "https://hooks.example/tokenpulse")
    monkeypatch.setenv("TOKENPULSE_WEBHOOK_SECRET", "whsec-super-secret")
    settings = load_settings()
    cfg = stream_config(settings, load_policy(None), "127.0.0.1:9092")
    hook = cfg.receivers["webhook"]
    assert hook.secrets() == ["whsec-super-secret", "https://hooks.example/tokenpulse"]
    assert "whsec-super-secret" not in repr(cfg) + repr(settings) and "hooks.example" not in repr(cfg)
    monkeypatch.delenv("TOKENPULSE_WEBHOOK_URL")
    assert "webhook" not in stream_config(load_settings(), load_policy(None), "127.0.0.1:9092").receivers


def test_policy_command_prints_a_policy_with_budgets_that_loads_back_the_same(tmp_path: Path):
    """Budget amounts are Decimals: printed as the exact numbers they are, and the
    normalised policy it prints is itself a valid policy that loads to the same thing."""
    from tokenpulse.policy import load_policy

    p = tmp_path / "policy.yaml"
    p.write_text(
        "mix: {internal_models: ['acme-*'], max_third_party_share: 0.4, min_spend_usd: 12.5}\n"
        "budgets:\n"
        "  - {name: org, scope: org, amount: 50000.10, period: month,\n"
        "     allocations: [{team: ads, amount: 10000}, {team: search, percent: 12.5}]}\n"
        "  - {name: ml, scope: {team: ml}, unit: tokens, amount: 2000000, period: week}\n"
    )
    res = runner.invoke(app, ["policy", str(p)])
    assert res.exit_code == 0, res.output
    assert "amount: 50000.1\n" in res.stdout and "percent: 12.5\n" in res.stdout
    again = tmp_path / "again.yaml"
    again.write_text(res.stdout)
    assert load_policy(again).model_dump() == load_policy(p).model_dump()


def test_a_route_to_a_key_that_is_not_set_stops_the_worker_and_a_reload_with_its_line(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from tokenpulse.runtime import policy_source
    from tokenpulse.settings import load_settings

    p = tmp_path / "policy.yaml"
    p.write_text("routes:\n  - {match: {team: ads}, receiver: pagerduty, target: ads}\n")
    monkeypatch.setenv("TOKENPULSE_POLICY", str(p))
    monkeypatch.setenv("TOKENPULSE_PAGERDUTY_ROUTING_KEY", "rk-cli-SECRET")
    res = runner.invoke(app, ["worker"])
    assert res.exit_code == 2, res.output
    assert f"{p}:2: routes.0.target: no PagerDuty routing key named 'ads'" in res.stderr
    assert "rk-cli-SECRET" not in res.output + res.stderr
    # a policy reload checks the same, against the settings the worker started with
    source = policy_source(load_settings(), "127.0.0.1:9092")
    assert source is not None
    with pytest.raises(ValueError, match=r"routes\.0\.target"):
        source.load(p.read_text())
    monkeypatch.setenv("TOKENPULSE_PAGERDUTY_ROUTING_KEYS", '{"ads": "rk-ads-SECRET"}')
    assert [r.target for r in policy_source(load_settings(), "b:9092").load(p.read_text()).routes] == ["ads"]
    # a replay delivers nothing: it needs no secret
    monkeypatch.delenv("TOKENPULSE_PAGERDUTY_ROUTING_KEYS")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert runner.invoke(app, ["replay", str(empty), "--no-progress"]).exit_code == 0


def test_alerts_test_opens_and_closes_an_opsgenie_alert_with_a_named_key(monkeypatch: pytest.MonkeyPatch):
    from tests.fakes.opsgenie_server import FakeOpsgenieServer

    with FakeOpsgenieServer(api_keys={"og-ads-SECRET"}) as og:
        monkeypatch.setenv("TOKENPULSE_OPSGENIE_API_KEYS", '{"ads": "og-ads-SECRET"}')
        monkeypatch.setenv("TOKENPULSE_OPSGENIE_API_URL", og.url)
        res = runner.invoke(app, ["alerts", "test", "--to", "opsgenie"])  # no unnamed key: its only one
        assert res.exit_code == 0, res.output
        assert "opsgenie trigger: ok opsgenie: create accepted (HTTP 202)" in res.stdout
        assert [e["action"] for e in og.events()] == ["create", "close"]
        assert "og-ads-SECRET" not in res.output
        res = runner.invoke(app, ["alerts", "test", "--to", "opsgenie", "--target", "ml"])
        assert res.exit_code == 2 and "no Opsgenie API key named 'ml'" in res.stderr
        # what `tokenpulse dev` prints about each receiver of the registry
        from tokenpulse.cli import _receiver_lines
        from tokenpulse.settings import load_settings

        lines = _receiver_lines(load_settings())
        assert "  opsgenie   keys: ads" in lines and "  slack      off (set TOKENPULSE_SLACK_TOKEN)" in lines


def test_alerts_test_opsgenie_needs_a_key():
    res = runner.invoke(app, ["alerts", "test", "--to", "opsgenie"])
    assert res.exit_code == 2
    assert "TOKENPULSE_OPSGENIE_API_KEY or TOKENPULSE_OPSGENIE_API_KEYS is not set" in res.stderr


def test_a_worker_open_to_the_network_without_a_token_does_not_start(monkeypatch: pytest.MonkeyPatch):
    """Issue 13: ``WEB_HOST=0.0.0.0`` with no API token stops before any broker is reached,
    naming the setting; the operator may still say so explicitly."""
    monkeypatch.setenv("TOKENPULSE_WEB_HOST", "0.0.0.0")
    monkeypatch.delenv("TOKENPULSE_API_TOKEN", raising=False)
    monkeypatch.delenv("TOKENPULSE_KAFKA_BOOTSTRAP", raising=False)
    for command in (["worker"], ["dev", "--no-simulate"]):
        res = runner.invoke(app, command)
        assert res.exit_code == 2 and "TOKENPULSE_API_TOKEN is not set" in res.output, res.output
    monkeypatch.setenv("TOKENPULSE_ALLOW_UNAUTHENTICATED", "1")
    res = runner.invoke(app, ["worker"])
    assert "TOKENPULSE_KAFKA_BOOTSTRAP is not set" in res.output  # past the check, to the next one


def test_dev_points_slack_and_pagerduty_at_the_dev_inbox_only_when_they_are_not_configured(
        monkeypatch: pytest.MonkeyPatch):
    """Issue 13: with no Slack token (or no PagerDuty key) ``tokenpulse dev`` delivers to the dev
    inbox inside its worker; a real receiver stays real; the banner says which, with no secret."""
    from tokenpulse.cli import _dev_inbox, _receiver_lines
    from tokenpulse.settings import load_settings

    for k in ("TOKENPULSE_SLACK_TOKEN", "TOKENPULSE_PAGERDUTY_ROUTING_KEY", "TOKENPULSE_PAGERDUTY_ROUTING_KEYS"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("TOKENPULSE_WEB_PORT", "7001")
    settings, spec = _dev_inbox(load_settings())
    on = settings.receivers()
    assert spec is not None and str(on["slack"].api_url) == "http://127.0.0.1:7001/dev/slack/api/"
    assert str(on["pagerduty"].url) == "http://127.0.0.1:7001/dev/pagerduty/v2/enqueue"
    lines = "\n".join(_receiver_lines(settings, spec))
    assert lines.count("dev inbox") == 2 and spec.slack_token not in lines and spec.pagerduty_key not in lines
    # issue 14: the stand-in Slack signs with the run's made-up secret, so its buttons are pressable
    assert on["slack"].signing_secret.get_secret_value() == spec.signing_secret and spec.signing_secret not in lines

    monkeypatch.setenv("TOKENPULSE_SLACK_TOKEN", "xoxb-real-token")
    settings, spec = _dev_inbox(load_settings())
    assert "slack.com" in str(settings.receivers()["slack"].api_url) and spec is not None
    assert settings.receivers()["slack"].signing_secret is None  # a real Slack app's secret is its own
    lines_by = {line.split()[0]: line for line in _receiver_lines(settings, spec)}
    assert "dev inbox" not in lines_by["slack"] and "dev inbox" in lines_by["pagerduty"]
    monkeypatch.setenv("TOKENPULSE_PAGERDUTY_ROUTING_KEY", "R0realkey")
    assert _dev_inbox(load_settings())[1] is None
