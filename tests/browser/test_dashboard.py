"""The worker's dashboard in headless Chromium (issue 13, item 6), as a person would open it.

One worker app per module (``streams.worker.app.create_app``, guarded by an API token, with the
demo policy and the dev inbox), served on a loopback port from a thread; its tables hold two
hours of the simulator's demo traffic (plus a team named like an HTML injection), aggregated
per window as the judge would write them, its judge the last windows of two series, its inbox
what the real Slack and PagerDuty renderers produce. No broker: the page reads only the API.

The name ``<img src=x onerror=alert(1)>`` holds ``=``, which the ingest refuses in a name (it
separates series keys), so it reaches the page the ways it can: as a team of the policy (a
budget allocation), in alert labels and in the Slack messages; the team of the events is
``<script>alert(1)</script>``, which the ingest accepts.

- without the token the API and the page answer 401; the login form opens them;
- the page loads with no console error, no dialog and no request leaving the worker;
- every chart has data (``data-points`` of each chart container);
- clicking a team shows its series;
- each alert shows on-call's answers (who chose what, when) and the team's table of the last
  30 days (alerts, acknowledged, new normal, not an anomaly, precision);
- a firing alert's message shows its answer buttons, and a press in the panel is accepted by
  ``/slack/actions`` (signed by the dev inbox with the run's made-up secret);
- a team named ``<img src=x onerror=alert(1)>`` renders as text, in tables, legends, answers and
  the Slack messages alike;
- a screenshot is saved (``TOKENPULSE_SCREENSHOTS=docs/img`` refreshes the README's).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from alerts.model import SpikeNotification
from alerts.receivers.pagerduty.render import pagerduty_event
from alerts.receivers.slack.config import SlackConfig
from alerts.receivers.slack.render import slack_blocks
from streams.ingest.normalize import normalize
from streams.ingest.pricing import Pricer
from streams.ingest.windows import NANO
from streams.worker.access import COOKIE, Access
from streams.worker.inbox import DevInboxSpec
from tokenpulse.demo import demo_policy_text
from tokenpulse.policy import parse_policy
from tokenpulse.runtime import stream_config
from tokenpulse.settings import Settings
from tokenpulse.simulate import DEMO_TEAMS, Simulator, Team

TOKEN = "browser-test-token-0123456789abcdef"
HOSTILE = "<img src=x onerror=alert(1)>"  # the policy's, the alerts', the Slack messages'
SCRIPT = "<script>alert(1)</script>"  # a team of the events
HOURS = 2


def _windows(now: float, pricer: Pricer, hostile: bool) -> dict[str, dict[str, Any]]:
    """The spend table of ``HOURS`` of simulated traffic: every series of every event, per minute."""
    teams = (*DEMO_TEAMS, Team(SCRIPT, 0.1, 3, internal_share=0.5)) if hostile else DEMO_TEAMS
    table: dict[str, dict[str, Any]] = {}
    end = now // 60 * 60  # closed windows only
    for raw in Simulator(rate=3, teams=teams, seed=5).between(end - HOURS * 3600, end):
        ev = normalize(raw)
        w = int(ev.ts // 60 * 60)
        sums = [int(round(pricer.price(ev) * NANO)), ev.input_tokens, ev.output_tokens, ev.cache_read_tokens,
                ev.cache_write_tokens, 1]
        for series in ("org", f"team={ev.team}", f"team={ev.team}|model={ev.model}", f"provider={ev.provider}",
                       f"model={ev.model}", f"user={ev.user}", f"tool={ev.tool or '(none)'}"):
            rec = table.setdefault(f"{series}|{w}", {"s": [0] * 6})
            rec["s"] = [a + b for a, b in zip(rec["s"], sums)]
    return table


def _judged(table: dict[str, dict[str, Any]], series: str) -> deque[dict[str, Any]]:
    """The judge's last windows of ``series``: observed, a smooth expectation and a $20 bound
    far above both (what made the old linear chart unreadable), one window anomalous."""
    rows: deque[dict[str, Any]] = deque(maxlen=120)
    ws = sorted(int(k.rpartition("|")[2]) for k in table if k.rpartition("|")[0] == series)
    expected = None
    for i, w in enumerate(ws[-90:]):
        observed = table[f"{series}|{w}"]["s"][0] / NANO
        expected = observed if expected is None else 0.9 * expected + 0.1 * observed
        rows.append({"window_start": w, "observed_usd": round(observed * (6 if i == 80 else 1), 6),
                     "expected_usd": round(expected, 6), "upper_usd": 20.0, "score": 0.5, "is_anomaly": i == 80})
    return rows


def _notes(now: float, team: str) -> list[SpikeNotification]:
    base: dict[str, Any] = dict(key=f"cost_spike:team={team}", severity="critical", series=f"team={team}",
                                labels={"team": team}, title=f"Cost spike: team={team}", started_at=now - 1800,
                                page=True, observed_usd=14.2, expected_usd=1.3, excess_usd=12.9, excess_pct=992.0,
                                window_start=now - 1800, window_end=now - 1740, impact_usd=61.0,
                                top_contributors=[{"kind": "user", "name": f"{team}-user-1", "usd": 11.0}])
    return [SpikeNotification(**base, seq=1, action="trigger", reason="first", fired_at=now - 1740),
            SpikeNotification(**base, seq=2, action="resolve", reason="resolved", fired_at=now - 600,
                              ended_at=now - 600)]


class Served:
    """The worker app on a loopback port, in a thread with its own event loop."""

    def __init__(self, tmp: Path, hostile: bool) -> None:
        self.tmp, self.hostile = tmp, hostile
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.url = ""
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as exc:  # noqa: BLE001 - said by the fixture
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        from aiohttp import web

        from streams.worker.app import create_app
        from streams.worker.state import WorkerState

        text = demo_policy_text()
        if self.hostile:
            text = text.replace("      - {team: legal, amount: 10000}",
                                f"      - {{team: legal, amount: 10000}}\n      - {{team: '{HOSTILE}', amount: 500}}")
        policy = parse_policy(text.encode(), "demo/policy.yaml")
        assert self.hostile == any(a.team == HOSTILE for b in policy.budgets for a in b.allocations)
        spec = DevInboxSpec.new()
        # the stand-in Slack with the run's made-up signing secret, as `tokenpulse dev` has it: the
        # alerts carry answer buttons, pressed in the Notifications panel
        slack = SlackConfig(token=SecretStr(spec.slack_token), signing_secret=SecretStr(spec.signing_secret))
        # placement="org": the spend below is seeded into the judge partition's own budget ledger,
        # which the org placement keeps beside the judge (with "series" it is the org stage's)
        cfg = dataclasses.replace(stream_config(Settings(placement="org"), policy, "127.0.0.1:1", 1), api_token=TOKEN,
                                  dev_inbox=spec, data_dir=str(self.tmp), receivers={"slack": slack})
        app = create_app(cfg)
        state: WorkerState = app.tokenpulse  # type: ignore[attr-defined]
        now = time.time()
        table = _windows(now, Pricer(cfg.price_overrides), self.hostile)
        state.tables.spend.data.update(table)
        judge = state.judging.judge_for(0)  # and the partition's budget ledger
        ledger = state.judging.ledgers[0]
        for i, (key, rec) in enumerate(sorted(table.items(), key=lambda kv: int(kv[0].rpartition("|")[2]))):
            series, _, w = key.rpartition("|")
            ledger.apply_judge_spend(series, int(w), rec["s"], {0: i})
        for series in ("team=ads", f"team={SCRIPT}") if self.hostile else ("team=ads",):
            judge.recent[series] = _judged(table, series)
        notes = _notes(now, HOSTILE if self.hostile else "ads")
        for n in notes:
            state.tables.alerts.data[n.key] = n.to_dict()
        assert state.feedback is not None
        team = HOSTILE if self.hostile else "ads"
        for i, (action, user) in enumerate((("tokenpulse_ack", "ana"), ("tokenpulse_not_anomaly", team))):
            state.feedback.table.data[f"slack:C1:1.0:U{i}:{i}"] = {
                "id": f"slack:C1:1.0:U{i}:{i}", "action": action, "key": notes[0].key, "series": notes[0].series,
                "started_at": notes[0].started_at, "team": team, "user": user, "user_id": f"U{i}",
                "at": now - 1700 + i, "outcome": "recorded"}
        inbox = state.inbox
        assert inbox is not None
        root = None
        for n in notes:
            text, blocks = slack_blocks(n, compact=root is not None)
            if root is not None:
                inbox.slack("chat.update", spec.slack_token, {"channel": "#ai-spend", "ts": root,
                                                               "text": slack_blocks(n)[0], "blocks": slack_blocks(n)[1]})
            got = inbox.slack("chat.postMessage", spec.slack_token,
                              {"channel": "#ai-spend", "text": text, "blocks": blocks, "thread_ts": root})
            root = root or got["ts"]
            inbox.enqueue(pagerduty_event(n, spec.pagerduty_key))
        # a firing alert's message, with its answer buttons
        firing = dataclasses.replace(notes[0], key="cost_spike:team=search", series="team=search",
                                     labels={"team": "search"}, title="Cost spike: team=search")
        text, blocks = slack_blocks(firing, interactive=True)
        inbox.slack("chat.postMessage", spec.slack_token, {"channel": "#ai-spend", "text": text, "blocks": blocks})
        runner = web.AppRunner(app.web.web_app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _serve(tmp: Path, hostile: bool) -> Served:
    served = Served(tmp, hostile)
    served.thread.start()
    served.ready.wait(60)
    if served.error is not None:
        raise served.error
    assert served.url, "the worker did not start"
    return served


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, chromium: Any) -> Iterator[Served]:
    """The demo's teams: what the README's screenshot shows."""
    # chromium first: without a browser this module skips before building anything
    served = _serve(tmp_path_factory.mktemp("worker"), hostile=False)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def hostile_worker(tmp_path_factory: pytest.TempPathFactory, chromium: Any) -> Iterator[Served]:
    """The same with names made to be run as HTML if a page ever inserted them as HTML."""
    served = _serve(tmp_path_factory.mktemp("hostile"), hostile=True)
    yield served
    served.stop()


def _open(watched_page: Any, worker: Served, *, logged_in: bool = True) -> Any:
    watched_page.allow(worker.url + "/")
    page = watched_page.page
    if logged_in:
        page.context.add_cookies([{"name": COOKIE, "value": Access(api_token=TOKEN).session_value(),
                                   "url": worker.url + "/"}])
    return page


def _loaded(page: Any, times: int = 1) -> None:
    """Wait until the page's refresh has run ``times`` times (no script evaluation: the CSP
    allows none)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        n = page.get_attribute("body", "data-loaded")
        if n is not None and int(n) >= times:
            return
        page.wait_for_timeout(50)
    raise AssertionError("the dashboard did not finish loading")


def test_401_without_the_token_and_the_page_works_after_login(watched_page: Any, worker: Served) -> None:
    page = _open(watched_page, worker, logged_in=False)
    assert page.request.get(worker.url + "/api/spend").status == 401
    resp = page.goto(worker.url + "/dashboard")
    assert resp.status == 401 and page.locator("form[action='/login']").count() == 1
    page.fill("#token", "not-the-token-at-all")
    page.click("button[type=submit]")
    assert "not the API token" in page.text_content("body")
    page.fill("#token", TOKEN)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.url == worker.url + "/dashboard"
    _loaded(page)
    assert page.text_content("#status").startswith("updated"), page.text_content("#status")
    assert page.request.get(worker.url + "/api/spend").status == 200  # the cookie opens the API too
    cookie = next(c for c in page.context.cookies() if c["name"] == COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and TOKEN not in cookie["value"]
    assert watched_page.console_errors == [e for e in watched_page.console_errors if "401" in e]  # only the refusals
    assert watched_page.dialogs == [] and watched_page.blocked == []


def test_the_page_loads_cleanly_every_chart_has_data_and_a_team_shows_its_series(
        watched_page: Any, worker: Served, screenshot: Callable[..., Path]) -> None:
    page = _open(watched_page, worker)
    resp = page.goto(worker.url + "/dashboard")
    assert resp.status == 200
    assert resp.headers["content-security-policy"].startswith("default-src 'self'")
    _loaded(page)
    assert page.text_content("#status").startswith("updated"), page.text_content("#status")
    points = {c.get_attribute("id"): int(c.get_attribute("data-points") or 0) for c in page.query_selector_all(".chart")}
    assert points.pop("chart-series") == 0  # until a team is picked
    empty = [name for name, n in points.items() if n <= 0]
    assert points and not empty, points
    assert any(name.startswith("chart-budget-") for name in points)
    spent = page.text_content("#budgets")
    assert "org-monthly (month)" in spent and "$0$" not in spent.replace(" ", "")  # the ledger's own figures
    assert page.locator(".uplot canvas").count() >= len(points)
    # what on-call gets: the Slack message as Slack shows it, the page beside it
    assert page.locator("#slack .s-header").count() >= 1 and page.locator("#slack .s-reply").count() >= 1
    assert page.locator("#pagerduty .pd-event").count() == 2
    # on-call's answers: beside the alert (who chose what, when), and the team's 30 days
    answers = page.text_content("#alerts td.answers")
    assert "acknowledged by ana" in answers and "not an anomaly by ads" in answers, answers
    row = [c.text_content() for c in page.query_selector_all("#answers tr:has-text('ads') td")]
    assert row == ["ads", "1", "1", "1", "0", "1", "0", "0 %"], row

    # the answer buttons of a firing alert: a press goes through /slack/actions, signed by the inbox
    assert page.locator("#slack button.s-button").count() == 4
    page.click("#slack button[data-action-id=tokenpulse_ack]")
    page.wait_for_selector("#slack .s-press-note:has-text('sent: the worker applies it')", timeout=5000)
    # (no broker here: the press stops at the feedback topic, which the integration tier has)
    metrics = page.request.get(worker.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text()
    assert 'tokenpulse_slack_actions_total{action="tokenpulse_ack"} 1' in metrics, metrics[-2000:]
    assert "slack_actions_rejected_total" not in metrics

    page.click("#spend-team a.series >> text=ads")
    deadline = time.monotonic() + 10
    while int(page.get_attribute("#chart-series", "data-points") or 0) == 0 and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert int(page.get_attribute("#chart-series", "data-points") or 0) > 0
    assert page.text_content("#series-name").startswith("team=ads — last window")
    assert "series=team%3Dads" in page.url
    for by in ("model", "provider", "tool"):
        page.click(f"#stack-by button[data-by={by}]")
        page.wait_for_selector(f"#spend-sum:has-text('by {by}')", timeout=5000)  # drawn from /api/timeseries?by=
        assert int(page.get_attribute("#chart-spend", "data-points") or 0) > 0
    page.click("#stack-by button[data-by=team]")
    page.wait_for_timeout(300)
    assert watched_page.problems() == []
    screenshot(page, "dashboard", full_page=False, clip={"x": 0, "y": 0, "width": 1200, "height": 900})


def test_a_team_named_like_html_renders_as_text(watched_page: Any, hostile_worker: Served) -> None:
    worker = hostile_worker
    page = _open(watched_page, worker)
    page.goto(worker.url + "/dashboard?series=team%3D%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    _loaded(page)
    page.wait_for_timeout(300)
    assert watched_page.dialogs == []
    assert page.locator("img").count() == 0  # no element was made from a name
    assert page.locator("script").count() == 2  # uPlot and the dashboard's own
    assert HOSTILE in page.text_content("#answers") and f"by {HOSTILE}" in page.text_content("#alerts td.answers")
    for where in ("#budgets", "#burndowns", "#alerts", "#slack", "#pagerduty"):
        assert HOSTILE in page.text_content(where), where  # Slack's escaped mrkdwn shows as the name it was
    for where in ("#spend-team", "#chart-inhouse", "#chart-spend"):  # tables and uPlot's legends
        assert SCRIPT in page.text_content(where), where
    assert page.text_content("#series-name").startswith(f"team={SCRIPT} — last window")
    assert int(page.get_attribute("#chart-series", "data-points") or 0) > 0
    assert watched_page.problems() == []
