"""The replay report's pieces without a browser: the trace a replay fills (the same forked or
not, and nothing changes for a replay that asks for none), the alert spans, the downsampling,
and the page itself — self-contained, every name escaped, the sections in place."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

import tokenpulse.replay as replay_mod
from tests.tokenpulse.test_replay import MONDAY_6AM, SPIKE_AT, cfg, history
from tokenpulse.cli import app
from tokenpulse.replay import Incident, ReplayResult, replay_lines
from tokenpulse.report_html import SeriesTrace, Span, WindowTrace, alert_spans, build_report, chart_order, downsample

HOSTILE = "<img src=x onerror=alert(1)>"


class Tags(HTMLParser):
    """Every start tag and its attributes, and the text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> Tags:
    p = Tags()
    p.feed(page)
    p.close()
    return p


def trace_of(series: dict[str, list[float]], start: float = MONDAY_6AM, w: int = 60) -> WindowTrace:
    tr = WindowTrace()
    for name, obs in series.items():
        s = tr.series[name] = SeriesTrace()
        for i, v in enumerate(obs):
            s.w.append(start + i * w)
            s.observed.append(v)
            s.expected.append(1.0)
            s.upper.append(3.0)
            s.anomaly.append(int(v > 3))
    return tr


def spike(series: str, action: str, at: float, members: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"kind": "spike", "series": series, "action": action, "fired_at": at, "severity": "warning",
            "members": members or []}


# ------------------------------------------------------------------ the trace -------
@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return history()  # six hours, the spike in the sixth


@pytest.fixture(scope="module")
def traced(lines: list[bytes]) -> tuple[ReplayResult, WindowTrace]:
    tr = WindowTrace()
    return replay_lines(lines, cfg(), fork=False, trace=tr), tr


def test_a_trace_holds_every_window_of_every_series_and_changes_no_verdict(
    lines: list[bytes], traced: tuple[ReplayResult, WindowTrace]
) -> None:
    plain = replay_lines(lines, cfg(), fork=False)
    res, tr = traced
    assert res.trace is tr and plain.trace is None
    assert res.notifications == plain.notifications and res.firings == plain.firings
    assert res.windows_judged == plain.windows_judged
    org = tr.series["org"]
    # one record per judged window, in order, a minute apart (the org has spend every minute)
    assert len(org) == plain.windows_judged
    assert list(np.diff(np.frombuffer(org.w, dtype=np.float64))) == [60.0] * (len(org) - 1)
    assert {"org", "team=ads", "provider=openai"} <= set(tr.series)
    ads = tr.series["team=ads"]
    assert ads.labels == {"team": "ads"}
    # the spike is in it, above the bound, and the quiet windows are below it
    obs, up = np.frombuffer(ads.observed), np.frombuffer(ads.upper)
    at = np.frombuffer(ads.w) >= SPIKE_AT
    assert (obs[at][:10] > up[at][:10]).any() and (obs[~at][60:] <= up[~at][60:]).mean() > 0.99


@pytest.mark.skipif(not replay_mod._can_fork(), reason="needs two cores and fork")
def test_the_forked_judge_fills_the_same_trace(
    lines: list[bytes], traced: tuple[ReplayResult, WindowTrace], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay_mod, "FORK_AFTER_LINES", 4096)  # fork early, mid-history
    one, two = traced[1], WindowTrace()
    replay_lines(lines, cfg(), fork=True, trace=two)
    assert set(one.series) == set(two.series)
    for name, s in one.series.items():
        t = two.series[name]
        assert (s.w, s.observed, s.expected, s.upper, s.anomaly, s.labels) == \
            (t.w, t.observed, t.expected, t.upper, t.anomaly, t.labels), name


# ------------------------------------------------------------------ spans -----------
def test_alert_spans_run_from_firing_to_resolve_for_each_member() -> None:
    notes = [
        spike("team=ads", "trigger", 100.0),
        # the group's update: a second member joins
        spike("team=ads", "update", 160.0, [{"series": "team=ads", "status": "firing", "severity": "warning"},
                                             {"series": "team=ads|model=m", "status": "firing", "severity": "critical"}]),
        # the org alert names the team alert it inhibited: no span of the team's from it
        spike("org", "trigger", 170.0, [{"series": "team=search", "status": "inhibited"}]),
        spike("team=ads", "resolve", 400.0, [{"series": "team=ads", "status": "resolved", "severity": "warning"},
                                              {"series": "team=ads|model=m", "status": "resolved"}]),
        {"kind": "budget", "series": "team=ads", "action": "trigger", "fired_at": 50.0},
    ]
    spans = alert_spans(notes, end=1000.0)
    assert [(s.start, s.end, s.open_end) for s in spans["team=ads"]] == [(100.0, 400.0, False)]
    assert [(s.start, s.end, s.severity) for s in spans["team=ads|model=m"]] == [(160.0, 400.0, "critical")]
    assert [(s.start, s.end, s.open_end) for s in spans["org"]] == [(170.0, 1000.0, True)]  # still firing
    assert "team=search" not in spans


def test_charts_are_the_org_then_each_team_with_its_series() -> None:
    tr = trace_of({n: [1.0] * 5 for n in ("org", "team=b", "team=a|model=x", "team=a", "provider=p", "team=c")})
    firings = [{"series": "team=a|model=x"}, {"series": "provider=p"}, {"series": "team=zz"}]
    order = chart_order(tr, firings, {"team=a": [Span(0, 1, "alert")]}, ["b", "unknown"])
    # team=c neither alerted nor is labelled; team=zz and team=unknown have no windows
    assert order == ["org", "team=a", "team=a|model=x", "team=b", "provider=p"]


# ------------------------------------------------------------------ downsampling ----
def test_a_long_series_is_bucketed_but_keeps_its_alert_windows() -> None:
    n = 21 * 1440
    obs = [1.0] * n
    obs[10_000] = 50.0  # a one-minute spike inside a kept span
    obs[20_000] = 40.0  # and one outside: its bucket's max still shows it
    tr = trace_of({"org": obs})
    t_keep = MONDAY_6AM + 10_000 * 60
    p = downsample(tr.series["org"], 60, keep=[(t_keep - 600, t_keep + 600)])
    assert p.bucket_s == 3600 and len(p.x) < 600
    assert 50.0 in p.obs and 50.0 in p.obs_max  # drawn as it was
    assert 40.0 in p.obs_max and 40.0 not in p.obs  # folded into an hourly mean, but its max is kept
    kept = (p.x > t_keep - 600) & (p.x < t_keep + 600)
    assert np.all(np.diff(p.x[kept]) == 60.0)  # window by window there
    assert np.all(np.diff(p.x) > 0)


def test_a_gap_is_not_bridged() -> None:
    tr = trace_of({"org": [1.0] * 10})
    for i in range(10):  # ten more windows, a day later
        tr.series["org"].w.append(MONDAY_6AM + 86400 + i * 60)
        for col in (tr.series["org"].observed, tr.series["org"].expected, tr.series["org"].upper):
            col.append(1.0)
    p = downsample(tr.series["org"], 60)
    assert np.isnan(p.obs).sum() == 1 and len(p.x) == 21


# ------------------------------------------------------------------ the page --------
def page_of(**kw: Any) -> tuple[str, Any]:
    tr = trace_of({"org": [1.0] * 200 + [9.0] * 5 + [1.0] * 100, f"team={HOSTILE}": [0.5] * 305})
    t_fire = MONDAY_6AM + 201 * 60
    firing = {"team": HOSTILE, "series": f"team={HOSTILE}", "fired_at": "2026-01-05T09:21:00Z", "kind": "cost_spike",
              "severity": "warning", "observed": 9.0, "expected": 1.0, "excess_usd": 8.0, "excess_pct": 800.0,
              "incident_excess_usd": 30.0, "page": False, "why": f"counts: {HOSTILE} <script>x</script>",
              "top_contributors": [{"kind": "user", "name": "<b>eve</b>", "usd": 8.0, "expected_usd": 0.1,
                                    "excess_usd": 7.9}]}
    budget = {"team": None, "series": "org", "fired_at": "2026-01-05T10:00:00Z", "kind": "budget_threshold",
              "action": "trigger", "why": "80 % of <i>org daily</i>",
              "budget": {"name": "<i>org daily</i>", "unit": "usd", "spent": 80.0, "limit": 100.0, "pct_used": 80.0,
                         "threshold": 80.0, "period_id": "2026-01-05"}}
    args: dict[str, Any] = dict(
        trace=tr, window_seconds=60,
        notifications=[spike("org", "trigger", t_fire), spike("org", "resolve", t_fire + 300)],
        firings=[firing], budget_firings=[budget],
        counters={"accepted": 1234, "rejected": 2, "duplicate": 3, "late": 0},
        first_ts=float(MONDAY_6AM), last_ts=float(MONDAY_6AM + 305 * 60), teams={HOSTILE},
        rejects=[(7, "invalid JSON: <oops>")],
        summary={"windows_judged": 305, "score": {
            "incidents": 1, "detected": 1, "recall": 1.0, "false_alerts": 0, "team_weeks": 0.03,
            "false_alerts_per_team_week": 0.0, "median_delay_s": 60.0,
            "per_incident": [{"team": HOSTILE, "name": HOSTILE, "start": "2026-01-05T09:20:00Z", "detected": True,
                              "delay_s": 60.0}]}},
        incidents=[Incident(HOSTILE, t_fire - 60, t_fire + 600, True, HOSTILE),
                   Incident(HOSTILE + "2", t_fire, t_fire + 60, False, "quiet")],
        detector={"detector": "default", "params": {"min_excess_usd": 0.5, "note": "<script>"}},
        source="<b>h</b>.jsonl",
    )
    args.update(kw)
    return build_report(**args)


def test_the_page_is_self_contained_and_every_name_is_text() -> None:
    page, charts = page_of()
    doc = parse(page)
    tags = {t for t, _ in doc.tags}
    # only the page's own markup: nothing a name could have brought in
    assert tags <= {"html", "head", "meta", "title", "style", "body", "main", "h1", "h2", "p", "nav", "a", "div",
                    "b", "span", "details", "summary", "table", "tr", "th", "td", "figure", "img", "figcaption",
                    "ul", "li", "code", "br"}
    assert "script" not in tags and "i" not in tags
    assert [b for t, a in doc.tags if t == "b" for b in [a] if a] == []  # no <b> with attributes
    imgs = [a for t, a in doc.tags if t == "img"]
    assert len(imgs) == len(charts) == 2
    assert all(str(a["src"]).startswith("data:image/png;base64,") and "onerror" not in a for a in imgs)
    # no address the page could fetch, and a policy that forbids any
    bare = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert bare.count("data:") == 1 and re.search(r"https?:|//|url\(|@import", bare) is None
    csp = next(a["content"] for t, a in doc.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in str(csp) and "img-src data:" in str(csp)
    text = "".join(doc.text)
    for shown in (HOSTILE, "<script>x</script>", "<b>eve</b>", "<i>org daily</i>", "<b>h</b>.jsonl", "<oops>"):
        assert shown in text, shown
    # labels naming a team the history lacks are listed
    assert HOSTILE + "2" in text and "no events in this history" in text


def test_the_page_has_its_sections_and_the_numbers() -> None:
    page, charts = page_of()
    doc = parse(page)
    ids = [a.get("id") for _, a in doc.tags if a.get("id")]
    assert ids[:2] == ["span", "counts"]
    for want in ("charts", "chart-0", "chart-1", "score", "score-table", "incidents-table", "negatives-table",
                 "alerts", "alerts-table", "budgets", "budgets-table", "settings", "settings-table"):
        assert want in ids, want
    # the charts come first, then the score, then the alerts
    assert ids.index("chart-1") < ids.index("score") < ids.index("alerts") < ids.index("budgets")
    metrics = {a["data-metric"]: a["data-value"] for _, a in doc.tags if "data-metric" in a}
    assert metrics["recall"] == "1.0" and metrics["median_delay_s"] == "60.0" and metrics["detected"] == "1"
    counts = [a["data-count"] for _, a in doc.tags if "data-count" in a]
    assert counts[:3] == ["accepted", "rejected", "duplicate"]
    assert "1,234" in page and "2026-01-05 06:00 UTC" in page
    assert [c.series for c in charts] == ["org", f"team={HOSTILE}"]
    assert all(c.png[:8] == b"\x89PNG\r\n\x1a\n" and c.width > 0 and c.height > 0 for c in charts)
    # the firing links to its series' chart
    assert ("a", {"href": "#chart-1"}) in doc.tags


def test_without_labels_the_score_says_how_to_get_one() -> None:
    page, _ = page_of(summary={"windows_judged": 305}, incidents=None)
    assert "--labels" in page and "score-table" not in page


def test_cli_replay_report(tmp_path: Path, lines: list[bytes]) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines))
    out = tmp_path / "r.html"
    res = CliRunner().invoke(app, ["replay", str(events), "--report", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert orjson.loads(res.stdout)["firings"] >= 1
    assert f"wrote {out}" in res.stderr
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "data-series=\"team=ads\"" in page


def test_cli_replay_report_into_a_missing_directory_fails_first(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(history(hours=1)))
    res = CliRunner().invoke(app, ["replay", str(events), "--report", str(tmp_path / "no" / "r.html"), "--no-progress"])
    assert res.exit_code == 2 and "no such directory" in res.stderr and res.stdout == ""
