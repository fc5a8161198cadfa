from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from alerts import Notification, classify_http, pagerduty_event, slack_blocks
from alerts.model import BudgetNotification, SpikeNotification
from alerts.receivers.pagerduty.render import pd_dedup_key
from alerts.receivers.slack.render import escape_mrkdwn
from alerts.text import clip, duration, window_range

T0 = 1_714_557_600.0  # 2024-05-01 10:00:00 UTC

# Every "&" in escaped text must start one of these entities: nothing else, nothing half cut.
ENTITY = re.compile(r"&(?!amp;|lt;|gt;)")


def note(**kw: Any) -> SpikeNotification:
    base: dict[str, Any] = dict(
        key="cost_spike:team=ads",
        seq=1,
        action="trigger",
        severity="critical",
        reason="first",
        series="team=ads",
        labels={"team": "ads"},
        title="Cost spike: team=ads",
        observed_usd=90.0,
        expected_usd=3.0,
        excess_usd=87.0,
        excess_pct=2900.0,
        top_contributors=[
            {"kind": "user", "name": "alice", "usd": 60.0},
            {"kind": "model", "name": "gpt-4o", "usd": 25.5},
        ],
        window_start=T0,
        window_end=T0 + 60,
        started_at=T0,
        fired_at=T0 + 60,
        page=True,
        dashboard_url="https://dash.example/alerts?series=team%3Dads&x=1",
        detector="ewma",
    )
    base.update(kw)
    return SpikeNotification(**base)


def mrkdwn_texts(blocks: list[dict[str, Any]]) -> list[str]:
    out = []
    for b in blocks:
        if b["type"] == "section":
            out.append(b["text"]["text"])
        elif b["type"] == "context":
            out.extend(e["text"] for e in b["elements"] if e["type"] == "mrkdwn")
    return out


def u16(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def test_trigger_blocks_say_what_on_call_needs() -> None:
    text, blocks = slack_blocks(note())
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "🚨 Cost spike: team=ads", "emoji": True}}
    main = blocks[1]["text"]["text"]
    assert "*Observed:* $90.00 per window vs *expected* $3.00" in main
    assert "*Excess:* +$87.00 (+2,900%)" in main
    assert "*Severity:* critical · paged on-call" in main
    assert "*Window:* 2024-05-01 10:00–10:01 UTC" in main
    contrib = blocks[2]["text"]["text"]
    assert "• user alice — $60.00" in contrib and "• model gpt-4o — $25.50" in contrib
    # The link survives escaping: & in the query is an entity, which Slack decodes.
    assert "<https://dash.example/alerts?series=team%3Dads&amp;x=1|Open in the dashboard>" in blocks[3]["text"]["text"]
    assert text.startswith("🚨 Cost spike: team=ads: observed $90.00 vs expected $3.00")


def test_resolve_says_back_to_normal_and_for_how_long() -> None:
    n = note(action="resolve", reason="resolved", seq=3, title="Resolved: cost spike team=ads",
             started_at=T0, ended_at=T0 + 35 * 60, fired_at=T0 + 38 * 60)
    text, blocks = slack_blocks(n)
    assert blocks[0]["text"]["text"].startswith("✅ Resolved")
    main = blocks[1]["text"]["text"]
    assert "*Back to normal* after 35 min (since 2024-05-01 10:35 UTC)." in main
    assert "*Worst window:* 2024-05-01 10:00–10:01 UTC: observed $90.00 vs expected $3.00" in main
    assert "back to normal after 35 min" in text


def test_follow_ups_are_compact() -> None:
    _, blocks = slack_blocks(note(action="update", reason="worsened", seq=2), compact=True)
    assert [b["type"] for b in blocks] == ["section", "section", "section"]
    assert blocks[0]["text"]["text"].startswith("*Worsened* since the last notification.")
    assert "*Firing since:* 2024-05-01 10:00 UTC" in blocks[0]["text"]["text"]


HOSTILE = ["<!channel>", "<https://evil.example|click me>", "R&D <b>", "<@U123>", "&amp;"]


@pytest.mark.parametrize("bad", HOSTILE)
def test_user_text_is_escaped_everywhere_slack_parses_it(bad: str) -> None:
    n = note(
        series=f"team={bad}",
        key=f"cost_spike:team={bad}",
        labels={"team": bad, bad: "x"},
        title=f"Cost spike: team={bad}",
        top_contributors=[{"kind": "user", "name": bad, "usd": 5.0}, {"kind": bad, "name": "m", "usd": 1.0}],
        detector=bad,
        dashboard_url=None,
    )
    for action in ("trigger", "resolve"):
        text, blocks = slack_blocks(Notification.from_dict({**n.to_dict(), "action": action}))
        for t in [text, *mrkdwn_texts(blocks)]:
            assert "<" not in t and ">" not in t, t  # no link, mention or tag can be formed
            assert not ENTITY.search(t), t
            assert escape_mrkdwn(bad) in t or "team=" not in t


def test_escape_mrkdwn() -> None:
    assert escape_mrkdwn("<!channel> & <https://x|y>") == "&lt;!channel&gt; &amp; &lt;https://x|y&gt;"


def test_slack_limits_hold_for_absurd_input() -> None:
    team = "t" * 10_000
    contributors = [{"kind": "user", "name": f"user-{i}-" + "<&>" * 50, "usd": float(i)} for i in range(200)]
    n = note(
        series=f"team={team}", key=f"cost_spike:team={team}", labels={"team": team, "model": "<&>" * 5000},
        title=f"Cost spike: team={team}", top_contributors=contributors,
    )
    for action in ("trigger", "update", "resolve"):
        text, blocks = slack_blocks(Notification.from_dict({**n.to_dict(), "action": action}))
        assert len(blocks) <= 50
        assert u16(blocks[0]["text"]["text"]) <= 150
        for b in blocks:
            if b["type"] == "section":
                assert 0 < u16(b["text"]["text"]) <= 3000
        for t in [text, *mrkdwn_texts(blocks)]:
            assert not ENTITY.search(t), "an escape was cut in half"
        assert u16(text) <= 3000
        contrib = next(t for t in mrkdwn_texts(blocks) if t.startswith("*Top contributors*"))
        assert "user-199-" in contrib  # biggest first
        assert "…and 190 more" in contrib
    assert len(orjson.dumps(blocks)) < 20_000


def test_header_counts_utf16_units() -> None:
    n = note(title="🔥" * 200)
    _, blocks = slack_blocks(n)
    assert u16(blocks[0]["text"]["text"]) <= 150


def test_clip_never_cuts_an_entity() -> None:
    s = escape_mrkdwn("<" * 100)
    for limit in range(2, 30):
        c = clip(s, limit)
        assert u16(c) <= limit and not ENTITY.search(c), (limit, c)


@pytest.mark.parametrize(
    "seconds,text", [(45, "45 s"), (35 * 60, "35 min"), (3600, "1 h"), (5400, "1 h 30 min"), (3 * 86400 + 7200, "3 d 2 h")]
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_window_range() -> None:
    assert window_range(T0, T0 + 300) == "2024-05-01 10:00–10:05 UTC"
    midnight = 1_714_608_000.0  # 2024-05-02 00:00 UTC
    assert window_range(midnight - 300, midnight) == "2024-05-01 23:55–00:00 UTC"
    assert window_range(T0, T0 + 2 * 86400) == "2024-05-01 10:00–2024-05-03 10:00 UTC"


# -- PagerDuty -----------------------------------------------------------------------------
def test_pagerduty_trigger_event() -> None:
    ev = pagerduty_event(note(), "R0UTING")
    assert ev["routing_key"] == "R0UTING"
    assert ev["event_action"] == "trigger" and ev["dedup_key"] == "cost_spike:team=ads"
    p = ev["payload"]
    assert p["source"] == "tokenpulse" and p["severity"] == "critical"
    assert p["component"] == "team=ads" and p["group"] == "ads" and p["class"] == "cost_spike"
    assert p["timestamp"] == "2024-05-01T10:01:00+00:00"
    assert p["summary"].startswith("[critical] Cost spike: team=ads: observed $90.00 vs expected $3.00")
    d = p["custom_details"]
    assert (d["observed_usd"], d["expected_usd"], d["excess_usd"], d["excess_pct"]) == (90.0, 3.0, 87.0, 2900.0)
    assert d["top_contributors"][0] == {"kind": "user", "name": "alice", "usd": 60.0}
    assert ev["links"] == [{"href": note().dashboard_url, "text": "tokenpulse dashboard"}]
    orjson.dumps(ev)  # JSON-able


def test_pagerduty_update_is_a_trigger_and_resolve_is_minimal() -> None:
    assert pagerduty_event(note(action="update", reason="worsened"), "k")["event_action"] == "trigger"
    ev = pagerduty_event(note(action="resolve", reason="resolved"), "k")
    assert ev == {"routing_key": "k", "event_action": "resolve", "dedup_key": "cost_spike:team=ads"}


def test_pagerduty_limits() -> None:
    team = "t" * 10_000
    n = note(series=f"team={team}", key=f"cost_spike:team={team}", labels={"team": team},
             title=f"Cost spike: team={team}",
             top_contributors=[{"kind": "user", "name": str(i), "usd": 1.0} for i in range(200)])
    ev = pagerduty_event(n, "k")
    assert len(ev["payload"]["summary"]) <= 1024
    assert len(ev["dedup_key"]) <= 255 and ev["dedup_key"] == pd_dedup_key(n.key)
    assert pd_dedup_key(n.key) != pd_dedup_key(n.key + "x")
    assert len(ev["payload"]["custom_details"]["top_contributors"]) == 20
    assert ev["payload"]["custom_details"]["other_contributors"] == 180
    assert len(orjson.dumps(ev)) < 512 * 1024


def test_pagerduty_accepts_a_secret_str() -> None:
    from pydantic import SecretStr

    assert pagerduty_event(note(), SecretStr("R0UTING"))["routing_key"] == "R0UTING"


@pytest.mark.parametrize(
    "status,kind",
    [(200, "ok"), (202, "ok"), (204, "ok"), (400, "permanent"), (401, "permanent"), (403, "permanent"),
     (404, "permanent"), (429, "retry"), (500, "retry"), (502, "retry"), (503, "retry"), (301, "permanent")],
)
def test_classify_http(status: int, kind: str) -> None:
    assert classify_http(status) == kind


def test_incident_total_is_shown_when_the_detector_tracks_it() -> None:
    n = note(reason="worsened", action="update", observed_usd=5.0, expected_usd=3.0,
             excess_usd=2.0, excess_pct=66.7, impact_usd=312.5,
             explanation="changepoint: 2.9x the hour-of-day level <!channel>")
    _, blocks = slack_blocks(n)
    text = "\n".join(mrkdwn_texts(blocks))
    assert "*Incident so far:* +$312.50 over expected since 2024-05-01 10:00" in text
    assert "*Why:* changepoint: 2.9x the hour-of-day level &lt;!channel&gt;" in text
    assert pagerduty_event(n, "k")["payload"]["custom_details"]["why"].startswith("changepoint: 2.9x")
    assert pagerduty_event(n, "k")["payload"]["custom_details"]["incident_excess_usd"] == 312.5
    _, blocks = slack_blocks(note())
    assert "Incident" not in "\n".join(mrkdwn_texts(blocks))


# -- budgets -------------------------------------------------------------------------------
P0 = 1_714_521_600.0  # 2024-05-01 00:00 UTC


def budget_note(**kw: Any) -> BudgetNotification:
    base: dict[str, Any] = dict(
        key="budget:ads-monthly:2024-05:80", seq=1, action="trigger", severity="warning", reason="first",
        series="team=ads", labels={"team": "ads"}, title="Budget ads-monthly: 80% used (2024-05)",
        started_at=P0, fired_at=T0, page=False, rule="budget_threshold", dashboard_url=None,
        budget="ads-monthly", unit="usd", period="month", tz="UTC", period_id="2024-05", period_start=P0,
        period_end=P0 + 31 * 86400, spent=812.5, limit=1000.0, pct_used=81.25, days_left=12.5, threshold=80.0,
        thresholds=[50.0, 80.0, 100.0], projected_total=1420.0, projected_pct=142.0,
        exhaustion_ts=P0 + 22 * 86400 + 6 * 3600,
    )
    base.update(kw)
    return BudgetNotification(**base)


def test_budget_threshold_renders_its_numbers() -> None:
    text, blocks = slack_blocks(budget_note())
    assert blocks[0]["text"]["text"] == "⚠️ Budget ads-monthly: 80% used (2024-05)"
    main = blocks[1]["text"]["text"]
    assert "*80% of the budget reached.*" in main
    assert "*Budget:* ads-monthly · *scope:* team=ads" in main
    assert "*Period:* 2024-05 (month, UTC): 2024-05-01 00:00 UTC – 2024-06-01 00:00 UTC" in main
    assert "*Spent:* $812.50 of $1,000.00 (81.2% used) · *days left:* 12.5" in main
    assert "*Forecast:* $1,420.00 by the end of the period (142.0%) · runs out 2024-05-23 06:00 UTC" in main
    assert "Observed" not in main and "Top contributors" not in "\n".join(mrkdwn_texts(blocks))
    assert "budget_threshold" in blocks[-1]["elements"][0]["text"]
    assert text == "⚠️ Budget ads-monthly: 80% used (2024-05): spent $812.50 of $1,000.00 (81.2%), forecast $1,420.00, 12.5 days left"


def test_budget_forecast_and_its_resolve() -> None:
    n = budget_note(key="budget_burn:ads-monthly:2024-05", rule="budget_forecast", title="Budget ads-monthly: projected to overrun (2024-05)",
                    explanation="profile of the last 4 weeks", threshold=None)
    main = slack_blocks(n)[1][1]["text"]["text"]
    assert main.startswith("*Projected to overrun* the budget by the end of the period.")
    assert "*How:* profile of the last 4 weeks" in main
    r = budget_note(key=n.key, rule="budget_forecast", action="resolve", reason="resolved", severity="info",
                    title="Budget ads-monthly: back on track (2024-05)",
                    threshold=None, projected_total=900.0, projected_pct=90.0, exhaustion_ts=None)
    text, blocks = slack_blocks(r)
    assert blocks[0]["text"]["text"].startswith("✅ Budget ads-monthly: back on track")
    main = blocks[1]["text"]["text"]
    assert main.startswith("*Back on track:*")
    assert "*Forecast:* $900.00 by the end of the period (90.0%) · does not run out this period" in main
    assert "days left" not in text


def test_token_budget_and_missing_numbers() -> None:
    n = budget_note(unit="tokens", spent=1_234_567, limit=2_000_000, projected_total=float("nan"),
                    exhaustion_ts=1e300, days_left=float("nan"))
    main = slack_blocks(n)[1][1]["text"]["text"]
    assert "*Spent:* 1,234,567 tokens of 2,000,000 tokens" in main
    assert "*Forecast:* n/a by the end" in main and "*days left:* n/a" in main
    orjson.dumps(pagerduty_event(n, "k"))


@pytest.mark.parametrize("bad", HOSTILE)
def test_budget_text_is_escaped(bad: str) -> None:
    n = budget_note(labels={"team": bad}, series=f"team={bad}", title=f"Budget {bad}: 80% used",
                    budget=bad, period_id=bad, tz=bad, period=bad, explanation=bad)
    for action in ("trigger", "resolve"):
        text, blocks = slack_blocks(Notification.from_dict({**n.to_dict(), "action": action}))
        for t in [text, *mrkdwn_texts(blocks)]:
            assert "<" not in t and ">" not in t, t
            assert not ENTITY.search(t), t
        assert escape_mrkdwn(bad) in blocks[1]["text"]["text"]


def test_budget_limits_hold_for_absurd_names() -> None:
    name = "b" * 10_000 + "<&>" * 3000
    n = budget_note(title=f"Budget {name}: 80% used", budget=name, labels={"team": name}, series="team=" + name)
    text, blocks = slack_blocks(n)
    assert u16(blocks[0]["text"]["text"]) <= 150
    assert all(u16(t) <= 3000 for t in mrkdwn_texts(blocks)) and u16(text) <= 3000
    ev = pagerduty_event(n, "k")
    assert len(ev["payload"]["summary"]) <= 1024
    assert len(orjson.dumps(ev)) < 512 * 1024


def test_budget_pagerduty_event_carries_the_numbers() -> None:
    ev = pagerduty_event(budget_note(), "k")
    p = ev["payload"]
    assert ev["dedup_key"] == "budget:ads-monthly:2024-05:80"
    assert p["class"] == "budget_threshold" and p["group"] == "ads"
    assert p["summary"] == ("[warning] Budget ads-monthly: 80% used (2024-05): spent $812.50 of $1,000.00 (81.2% used, "
                            "12.5 days left); forecast $1,420.00 (142.0%), runs out 2024-05-23 06:00 UTC")
    d = p["custom_details"]
    assert (d["budget"], d["unit"], d["period_id"], d["spent"], d["limit"], d["pct_used"], d["days_left"]) == (
        "ads-monthly", "usd", "2024-05", 812.5, 1000.0, 81.25, 12.5)
    assert (d["threshold_pct"], d["projected_total"], d["projected_pct"]) == (80.0, 1420.0, 142.0)
    assert d["exhaustion_at"] == "2024-05-23T06:00:00+00:00" and d["period_start"] == "2024-05-01T00:00:00+00:00"
    assert "observed_usd" not in d and "top_contributors" not in d
    orjson.dumps(ev)


def test_every_kind_round_trips_through_json_and_a_record_of_another_kind_or_version_is_refused() -> None:
    for n in (note(), budget_note(), budget_note(projected_total=float("nan"), threshold=None)):
        back = Notification.from_dict(orjson.loads(orjson.dumps(n.to_dict())))
        assert type(back) is type(n) and back.to_dict().keys() == n.to_dict().keys()
        assert orjson.dumps(back.to_dict()) == orjson.dumps(n.to_dict())  # NaN travels as null, and back
    record = budget_note().to_dict()
    assert record["kind"] == "budget" and record["limit"] == 1000.0 and "expected_usd" not in record
    with pytest.raises(ValueError, match="'budget:ads-monthly:2024-05:80': kind 'budget' is not spike"):
        SpikeNotification.from_dict(record)
    old = {k: v for k, v in record.items() if k != "kind"}  # written before kinds: not readable
    with pytest.raises(ValueError, match="kind None is not spike or budget or mix or report"):
        Notification.from_dict(old)
    with pytest.raises(ValueError, match="missing"):
        Notification.from_dict({k: v for k, v in record.items() if k != "spent"})
    # the engine reads its own group members (spike records) back as spikes
    assert SpikeNotification.from_dict({k: v for k, v in note().to_dict().items() if k != "kind"}) == note()


def member(series: str, status: str = "firing", **kw: Any) -> dict[str, Any]:
    return {"series": series, "labels": {"team": "ads"}, "status": status, "severity": "critical",
            "observed_usd": 90.0, "expected_usd": 3.0, "excess_usd": 87.0, "excess_pct": 2900.0,
            "impact_usd": None, "started_at": T0, "window_start": T0, "window_end": T0 + 60, **kw}


def test_a_group_lists_its_members_with_their_numbers_in_slack_and_pagerduty() -> None:
    n = note(members=[member("team=ads"), member("team=ads|model=<!channel>", "resolved", excess_usd=12.5)],
             title="Cost spike: team=ads (+1 more series)")
    _, blocks = slack_blocks(n)
    text = "\n".join(mrkdwn_texts(blocks))
    assert "*Alerts in this group (2)*" in text
    assert "• team=ads: $90.00 vs $3.00 (+$87.00, +2,900%) · critical" in text
    assert "team=ads|model=&lt;!channel&gt;" in text and "<!channel>" not in text
    assert "+$12.50" in text and "back to normal" in text
    details = pagerduty_event(n, "rk")["payload"]["custom_details"]
    assert [(m["series"], m["status"], m["excess_usd"]) for m in details["members"]] == [
        ("team=ads", "firing", 87.0), ("team=ads|model=<!channel>", "resolved", 12.5)]


def test_an_org_alert_says_which_alerts_it_inhibited() -> None:
    n = note(key="cost_spike:org", series="org", labels={"org": "acme"}, title="Cost spike: org",
             members=[member("team=ads", "inhibited")])
    text = "\n".join(mrkdwn_texts(slack_blocks(n)[1]))
    assert "inhibited by this alert" in text and "• team=ads:" in text
    assert "members" not in pagerduty_event(note(), "rk")["payload"]["custom_details"]  # one series: as before
