"""``tokenpulse replay --report`` opened in headless Chromium, as an analyst would open it: it
renders with no console error and no request leaving the file, every chart is an image with
a size, hostile names from events and labels show as text, and the score table says what the
replay's JSON summary says."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from tests.tokenpulse.test_replay import MONDAY_6AM, SPIKE_AT
from tokenpulse.cli import app
from tokenpulse.simulate import DEFAULT_TEAMS, Simulator, Spike, Team

# Passes the ingest's name rule (no '=' or '|'), so it is a team of the history, with a
# series, alerts and a chart; its users are named after it.
HOSTILE_TEAM = "<script>alert(1)</script>"
# Labels are no events: any text. A team no event names is listed as unknown.
HOSTILE_LABEL_TEAM = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    d = tmp_path_factory.mktemp("report")
    teams = (Team(HOSTILE_TEAM, 0.3, 12), *DEFAULT_TEAMS[1:])
    sim = Simulator(rate=2, seed=11, teams=teams, spikes=[Spike(HOSTILE_TEAM, factor=30, minutes=20, start=SPIKE_AT)])
    events = d / "events.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(e) for e in sim.between(MONDAY_6AM, MONDAY_6AM + 6 * 3600))
                       + b"\nnot json\n")
    labels = d / "labels.jsonl"
    labels.write_bytes(b"\n".join(orjson.dumps(r) for r in [
        {"team": HOSTILE_TEAM, "start": SPIKE_AT, "end": SPIKE_AT + 1200, "should_alert": True,
         "name": "runaway <b>loop</b>"},
        {"team": "search", "start": MONDAY_6AM + 3600, "end": MONDAY_6AM + 2 * 3600, "should_alert": False,
         "name": "a migration announced as the new normal"},
        {"team": HOSTILE_LABEL_TEAM, "start": SPIKE_AT, "end": SPIKE_AT + 600, "should_alert": True,
         "name": HOSTILE_LABEL_TEAM},
    ]))
    out = d / "report.html"
    res = CliRunner().invoke(app, ["replay", str(events), "--labels", str(labels), "--report", str(out),
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    return out, orjson.loads(res.stdout)


def test_the_report_renders_cleanly_and_says_what_the_replay_says(
    report: tuple[Path, dict[str, Any]], watched_page: Any, screenshot: Callable[..., Path]
) -> None:
    path, summary = report
    page = watched_page.page
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    assert watched_page.problems() == []
    # nothing but the file itself was asked for (the charts are data URIs)
    assert watched_page.requests == [path.as_uri()]

    # every chart is a decoded image with a size; one per charted series, the org first
    imgs = page.eval_on_selector_all(
        "figure img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight, e.getBoundingClientRect().height])")
    assert len(imgs) >= 2 and all(ok and w > 0 and h > 0 and shown > 0 for ok, w, h, shown in imgs), imgs
    series = page.eval_on_selector_all("figure", "els => els.map(e => e.dataset.series)")
    assert series[0] == "org" and f"team={HOSTILE_TEAM}" in series

    # hostile names are text: no element came from them, no dialog, and they read as written
    assert page.eval_on_selector_all("script", "els => els.length") == 0
    assert page.eval_on_selector_all("b", "els => els.filter(e => e.textContent === 'loop').length") == 0
    srcs = page.eval_on_selector_all("img", "els => els.map(e => e.getAttribute('src').slice(0, 22))")
    assert set(srcs) == {"data:image/png;base64,"}
    text = page.inner_text("body")
    assert HOSTILE_TEAM in text and HOSTILE_LABEL_TEAM in text and "runaway <b>loop</b>" in text
    assert HOSTILE_LABEL_TEAM in page.inner_text("#unknown-teams")
    assert watched_page.dialogs == []

    # the score table holds the summary's numbers
    sc = summary["score"]
    shown = dict(page.eval_on_selector_all("[data-metric]", "els => els.map(e => [e.dataset.metric, e.dataset.value])"))
    for key in ("recall", "detected", "false_alerts", "false_alerts_per_team_week", "median_delay_s", "team_weeks"):
        want = sc[key]
        assert (shown[key] == "" if want is None else float(shown[key]) == pytest.approx(want)), (key, shown[key], want)
    assert sc["incidents"] == 2 and sc["detected"] == 1  # the unknown team's incident is missed
    assert page.inner_text("[data-metric=detected]") == f"{sc['detected']} of {sc['incidents']}"
    assert page.inner_text("[data-metric=recall]") == f"{sc['recall']:.2f}"
    rows = page.eval_on_selector_all("#incidents-table tr[data-detected]", "els => els.map(e => e.dataset.detected)")
    assert rows == ["1" if r["detected"] else "0" for r in sc["per_incident"]]
    # every firing is listed with its explanation, and the header counts the events
    assert page.eval_on_selector_all("#alerts-table tr", "els => els.length") == summary["firings"] + 1
    assert page.inner_text("[data-count=accepted] b") == f"{summary['events']['accepted']:,}"
    assert page.inner_text("[data-count=rejected] b") == "1"

    shot = screenshot(page, "replay-report")
    assert 0 < shot.stat().st_size < 200_000
