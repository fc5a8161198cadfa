"""The dashboard page: served from the package, text-only rendering, and the API fields it reads."""

from __future__ import annotations

import re
from pathlib import Path

from streams.budgets.mix import mix_rows
from streams.delivery.outbox import SinkHealth
from streams.ingest.windows import NANO
from streams.worker.web import ASSETS, asset, dashboard_html, spend_rows

# the page and its own files (script, style sheet, charting library), as the browser gets them
PAGE = dashboard_html() + "".join(asset(name) for name in ASSETS)


def test_the_page_ships_with_the_package_and_needs_nothing_from_the_internet() -> None:
    assert PAGE.startswith("<!doctype html>") and "<title>tokenpulse</title>" in PAGE
    assert not re.search(r"""(src|href)=["']https?://""", PAGE)  # no CDN: works air-gapped


def test_values_are_inserted_as_text_never_as_html() -> None:
    """Team, user and model names come from producers: none of them may become markup."""
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in PAGE, sink


def test_every_endpoint_it_reads_is_served_by_the_worker() -> None:
    served = set(re.findall(r'@(?:app\.)?page\("([^"]+)"\)', Path("streams/worker/web.py").read_text()))
    used = set(re.findall(r'["`](/api/[a-z_]+)', PAGE))
    assert used and used <= served, used - served


def test_the_fields_it_reads_are_the_ones_the_api_returns() -> None:
    # /api/spend rows are keyed by the group_by dimension
    items = [("team=ads|0", {"s": [NANO, 1, 2, 0, 0, 1]}), ("model=gpt-4o|0", {"s": [NANO, 1, 2, 0, 0, 1]})]
    rows, total = spend_rows(items, "team", None, None)
    assert {"team", "cost_usd", "events"} <= rows[0].keys() and {"cost_usd", "events"} <= total.keys()
    rows, _ = spend_rows(items, "model", None, None)
    assert {"model", "cost_usd", "input_tokens", "output_tokens"} <= rows[0].keys()
    for field in ("r.team", "r.model", "r.cost_usd", "r.events", "r.input_tokens", "r.output_tokens"):
        assert field in PAGE
    # /api/mix
    [team] = mix_rows([("team=ads|model=gpt-4o|0", {"s": [NANO]})], (), -1, 60)
    for field in ("team", "third_party_share_pct", "change_pct_points", "internal_usd", "third_party_usd"):
        assert field in team and f"t.{field}" in PAGE
    # /api/sinks
    row = SinkHealth("slack:#ads").to_dict()
    for field in ("sink", "up", "consecutive_failures", "last_error", "pending_notifications"):
        assert field in row and f"s.{field}" in PAGE
    # /api/alerts: the outbox records (Notification.to_dict) plus state and delivery; the numbers
    # of a row by kind: a spike's per window, a budget's spent of limit (see figures() in the page)
    from alerts.model import BudgetNotification, SpikeNotification

    note = SpikeNotification(key="cost_spike:team=ads", seq=1, action="trigger", severity="critical", reason="first",
                             series="team=ads", labels={"team": "ads"}, title="t", observed_usd=9.0, expected_usd=1.0,
                             excess_usd=8.0, excess_pct=800.0, top_contributors=[], window_start=0.0, window_end=60.0,
                             started_at=0.0, fired_at=60.0, page=True, impact_usd=8.0)
    record = note.to_dict()
    for field in ("series", "severity", "observed_usd", "expected_usd", "excess_usd", "impact_usd", "started_at",
                  "top_contributors", "key", "kind"):
        assert field in record and f"a.{field}" in PAGE
    budget = BudgetNotification(key="budget:b:2026-05:80", seq=1, action="trigger", severity="warning", reason="first",
                                rule="budget_threshold", series="org", labels={}, title="t", started_at=0.0, fired_at=1.0,
                                budget="b", unit="usd", period="month", tz="UTC", period_id="2026-05", period_start=0.0,
                                period_end=1.0, spent=8.0, limit=10.0, pct_used=80.0, days_left=3.0).to_dict()
    for field in ("unit", "spent", "limit"):
        assert field in budget and f"a.{field}" in PAGE
    # ... and the lifecycle state beside it: who acknowledged, until when it is snoozed
    from streams.worker.lifecycle import LIFECYCLE_STATES, lifecycle

    state = lifecycle(record, [], [], 0.0)
    for field in ("state", "acknowledged_by", "acknowledged_at", "snoozed_by", "snoozed_until"):
        assert field in state and f"a.{field}" in PAGE
    for s in LIFECYCLE_STATES:  # each state has its own colour
        assert f".{s} {{" in PAGE
    # /api/policy: PolicyReloader.status() and its last ReloadResult
    import inspect

    from streams.worker.reload import PolicyReloader, ReloadResult

    last = ReloadResult(at=0.0, ok=False, error="policy.yaml:8: bad").to_dict()
    for field in ("at", "ok", "error"):
        assert field in last and f"last.{field}" in PAGE
    status_src = inspect.getsource(PolicyReloader.status)
    for field in ("path", "loaded_at", "restart_required", "last_reload"):
        assert f'"{field}"' in status_src and f"p.{field}" in PAGE


def test_the_ingest_card_reads_the_counters_the_status_returns() -> None:
    """Quarantined (implausible) events are shown next to the other ingest counters."""
    from streams.ingest.windows import Counters

    names = Counters().to_dict()
    for field in ("accepted", "duplicate", "late", "rejected", "implausible", "failed"):
        assert field in names and f'"{field}"' in PAGE
    assert "st.ingest_totals" in PAGE and '"ingest_totals"' in Path("streams/worker/web.py").read_text()
    assert "quarantined" in PAGE


def test_two_orgs_with_a_team_of_one_name_are_two_rows() -> None:
    items = [("team=ads|0", {"s": [NANO, 1, 2, 0, 0, 1]}), ("org=acme|team=ads|0", {"s": [3 * NANO, 1, 2, 0, 0, 1]}),
             ("org|0", {"s": [NANO, 1, 2, 0, 0, 1]}), ("org=acme|0", {"s": [3 * NANO, 1, 2, 0, 0, 1]})]
    rows, total = spend_rows(items, "team", None, None)
    assert [(r.get("org"), r["team"], r["cost_usd"]) for r in rows] == [("acme", "ads", 3.0), (None, "ads", 1.0)]
    assert total["cost_usd"] == 4.0
    rows, _ = spend_rows(items, "org", None, None)
    assert [(r["org"], r["cost_usd"]) for r in rows] == [("org=acme", 3.0), ("org", 1.0)]
    assert "r.org" in PAGE  # the dashboard names the org of another org's team
